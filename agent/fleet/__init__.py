"""Looking after devices in the field: provisioning, enrolment and renewal of certificates, the
doctor's checks, decommissioning, remote configuration, time hints and signed releases.
"""

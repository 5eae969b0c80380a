"""Running the agent as a service: the service that wires configuration, keys, outbox, link and
parts together; systemd's notify protocol and watchdog; metrics.
"""

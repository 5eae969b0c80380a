"""The reference bank-side receiver of cocoon-agent events.

It verifies every event against the device's registered public key, stores it idempotently,
checks the hash chain, and publishes a signed cumulative acknowledgement per device: the only
signal that lets a device forget an event.
"""

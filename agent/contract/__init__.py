"""The wire contract the device shares with the bank: events, canonical bytes, signed envelopes,
signing and verification, acks, topics, the offline chain check, and the pure pricing
(`agent.contract.pricing`) that the bank uses to recompute an amount from an event alone.

What lives here is what an integrator may rely on byte for byte (docs/events.md); it does no I/O
beyond reading key files.
"""

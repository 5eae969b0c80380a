"""What the device shares with the bank: the wire contract, and the conventions of both sides'
programs.

The wire contract: events and their time fields, canonical bytes, signed envelopes, signing and
key files, acks, commands, topics and device ids, the enrolment protocol, the offline chain
check, and the pure pricing (`agent.contract.pricing`) with which the bank recomputes an amount
from an event alone. What lives here is what an integrator may rely on byte for byte
(docs/events.md). Beside it, what the agent's and the ingest's programs share with the people
and tools that run them: log lines (`logs`), exit codes (`commandline`) and strict settings
files (`settings`).

It imports nothing else of the project, so the bank's ingest can depend on it alone
(docs/architecture.md).
"""

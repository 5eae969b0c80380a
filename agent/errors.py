"""One exception root for the agent, with specific subclasses.

Messages are written for the person who has to act on them: what went wrong, where, and what to
do next. Expected faults are reported with these types and never as bare tracebacks.
"""


class CocoonError(Exception):
    """Root of every error the agent raises on purpose."""


class ConfigError(CocoonError, ValueError):
    """A configuration file is missing, unreadable or has an invalid value."""


class KeyFileError(CocoonError):
    """A key file is missing, unreadable, of the wrong kind, or would be overwritten."""


class SignatureError(CocoonError, ValueError):
    """A signature, key id or signed envelope does not verify."""


class EventFormatError(CocoonError, ValueError):
    """An event or message does not follow the wire contract in docs/events.md."""


class OutboxError(CocoonError):
    """The outbox cannot store or hand out events."""


class OutboxFull(OutboxError):
    """The outbox has no room for a money or alert event.

    Money events are never evicted, so a full outbox must stop new sales until the uplink drains
    it: the station shows this message to the clerk.
    """


class StaleAck(OutboxError):
    """An ack below the current watermark: late (several ingest workers) or replayed. Harmless,
    since it prunes nothing."""


class OutboxCorrupt(OutboxError):
    """The outbox database failed its integrity check."""


class CommandRejected(CocoonError):
    """A command from the backend or bank was refused; the reason is the message."""

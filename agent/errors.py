"""The agent's errors: the contract's (re-exported here), the outbox's, and `EXPECTED`.

Messages are written for the person who has to act on them: what went wrong, where, and what to
do next. Expected faults are reported with these types and never as bare tracebacks.
"""

from agent.contract.errors import (  # noqa: F401 (re-exported: the agent's one place for errors)
    CocoonError,
    CommandRejected,
    ConfigError,
    EventFormatError,
    KeyFileError,
    SignatureError,
)
from drivers.errors import DriverError

#: Every error raised on purpose, the agent's and the drivers': what the agent reports in one
#: line and survives, where anything else is a bug worth its traceback.
EXPECTED: tuple[type[Exception], ...] = (CocoonError, DriverError)


class OutboxError(CocoonError):
    """The outbox cannot store or hand out events."""


class OutboxFull(OutboxError):
    """The outbox has no room for a money or alert event.

    Money events are never evicted, so a full outbox must stop new sales until the uplink drains
    it: the station shows this message to the clerk.
    """

    exit_code = 1  # a command line refused now may be retried once the outbox drains


class StaleAck(OutboxError):
    """An ack below the current watermark: late (several ingest workers) or replayed. Harmless,
    since it prunes nothing."""


class OutboxUncertain(OutboxError):
    """The event's commit failed at its very end (the disk failed while making it durable):
    the event may or may not be on disk. Look it up before recording it again."""


class ChainForked(OutboxError):
    """A verified ack from the bank names a seq beyond this outbox's last event, or another
    hash at a seq it holds: the outbox is an older copy (a restored backup or SD image), and
    the bank holds events it does not. Repaired by `Outbox.resume_after`."""


class OutboxBusy(OutboxError):
    """Another process holds the outbox (a running agent): the caller must not quarantine it
    or run a second agent on it."""


class OutboxCorrupt(OutboxError):
    """The outbox database failed its integrity check."""

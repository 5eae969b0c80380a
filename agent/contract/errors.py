"""The errors of the contract, and the root of every error the project raises on purpose.

Messages are written for the person who has to act on them: what went wrong, where, and what to
do next. Expected faults are reported with these types and never as bare tracebacks. The bank's
ingest shares these with the device; the device's own errors (outbox, ...) are in agent.errors.
"""


class CocoonError(Exception):
    """Root of every error the agent and the ingest raise on purpose."""

    #: The exit status of a command line that stops on this error: 2, a problem to fix.
    exit_code = 2


class ConfigError(CocoonError, ValueError):
    """A configuration file is missing, unreadable or has an invalid value."""


class KeyFileError(CocoonError):
    """A key file is missing, unreadable, of the wrong kind, or would be overwritten."""


class SignatureError(CocoonError, ValueError):
    """A signature, key id or signed envelope does not verify."""


class EventFormatError(CocoonError, ValueError):
    """An event or message does not follow the wire contract in docs/events.md."""


class CommandRejected(CocoonError):
    """A command from the backend or bank was refused; the reason is the message."""

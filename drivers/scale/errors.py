"""One exception root for the scale drivers, with specific subclasses.

Frame errors are expected in the field (a loose cable, a wrong baud rate, an indicator switched
between units) and travel as values through the reader's callback; they never stop a reader.
Each message says what was wrong with which bytes and, where there is one, what to check.
"""

from __future__ import annotations

from drivers.errors import DriverError


def _show(raw: bytes, limit: int = 48) -> str:
    """Bytes as a short hex string for messages (`02 2b 30 ...`)."""
    text = raw[:limit].hex(" ")
    return text + (" ..." if len(raw) > limit else "")


class ScaleError(DriverError):
    """Root of every error the scale drivers raise on purpose."""


class ProtocolNotFound(ScaleError, LookupError):
    """A protocol name or option is not known."""


class FrameError(ScaleError, ValueError):
    """A frame (or a run of bytes) from the indicator was rejected.

    `raw` holds the offending bytes, so that a technician can compare them with the manual.
    """

    def __init__(self, message: str, raw: bytes = b""):
        super().__init__(f"{message} [{_show(raw)}]" if raw else message)
        self.raw = bytes(raw)


class ChecksumError(FrameError):
    """The frame's check characters do not match its content: noise on the line, or a wrong
    protocol or serial setting."""


class GarbageError(FrameError):
    """Bytes that belong to no frame: line noise, a partial frame after plugging in, or another
    protocol (check --protocol and --baud)."""


class MalformedFrame(FrameError):
    """A frame has the right boundaries but content the protocol does not allow."""


class UnsupportedUnit(FrameError):
    """A well-formed reading in a unit the drivers cannot convert to grams (pieces, ounces,
    percent): switch the indicator to a mass unit."""


class UnitChanged(FrameError):
    """The indicator switched units between two readings.

    The reading is kept in `reading`; a stable window never spans a unit change.
    """

    def __init__(self, old: str, new: str, reading):
        super().__init__(f"unit changed from {old} to {new}; weighing restarts", reading.raw)
        self.old, self.new, self.reading = old, new, reading


class WeightError(ScaleError, ValueError):
    """A reading cannot be turned into the value asked for."""


class NoWeight(WeightError):
    """The reading carries no weight value (overload, underload, a reply without data)."""


class InexactWeight(WeightError):
    """Converting a weight to integer grams would need rounding, which is never done
    silently."""


class PortError(ScaleError, OSError):
    """The serial port is unavailable or failed."""


class CommandError(ScaleError):
    """A command to the indicator failed."""


class CommandUnsupported(CommandError):
    """The protocol has no command of that name, or no commands at all."""


class CommandFailed(CommandError):
    """The indicator answered a command with an error (e.g. MT-SICS ES, ET, EL)."""

    def __init__(self, message: str, reply=None):
        super().__init__(message)
        self.reply = reply


class CommandTimeout(CommandError, TimeoutError):
    """No answer to a command within the timeout."""

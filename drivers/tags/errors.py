"""One exception root for the tag reader drivers, with specific subclasses.

Rejected frames are expected in the field (noise on a long RS-485 run, a module switched on
mid-frame, a wrong baud rate) and travel as values through the framer and the reader's error
callback; they never stop a reader. Each message says what was wrong with which bytes.
"""

from __future__ import annotations

from drivers.errors import DriverError


def show(raw: bytes, limit: int = 48) -> str:
    """Bytes as a short hex string for messages (`bb 02 22 ...`)."""
    text = raw[:limit].hex(" ")
    return text + (" ..." if len(raw) > limit else "")


class TagError(DriverError):
    """Root of every error the tag reader drivers raise on purpose."""


class ProtocolNotFound(TagError, LookupError):
    """A reader protocol name is not known."""


class FrameError(TagError, ValueError):
    """A frame (or a run of bytes) from a reader was rejected; `raw` holds the bytes, so that
    a technician can compare them with the module's manual."""

    def __init__(self, message: str, raw: bytes = b""):
        super().__init__(f"{message} [{show(raw)}]" if raw else message)
        self.raw = bytes(raw)


class GarbageError(FrameError):
    """Bytes that belong to no frame: line noise, a module switched on mid-frame, another
    protocol or a wrong baud rate (check --protocol and the module's baud rate)."""


class TruncatedFrame(FrameError):
    """A frame started but ended early (a new frame began, or the line went quiet) before
    the length its header announced."""


class OversizeFrame(FrameError):
    """A header announced more parameter bytes than any frame of this protocol carries:
    noise that looked like a frame start, or a wrong protocol."""


class ChecksumError(FrameError):
    """The frame's checksum does not match its content: noise on the line."""


class MalformedFrame(FrameError):
    """A frame with good boundaries and checksum whose content the protocol does not allow
    (a tag notice whose length disagrees with its PC word, an unknown frame type)."""


class TagCrcError(FrameError):
    """A tag notice whose CRC-16 does not cover its PC and EPC: the tag's reply was corrupted
    and the module passed it on; the read is dropped."""


class PortError(TagError, OSError):
    """A reader's port or connection is unavailable or failed."""

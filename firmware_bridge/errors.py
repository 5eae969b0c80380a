"""One exception root for the co-processor bridge, with specific subclasses.

Decoder errors are expected on a serial line (noise, a reset mid-frame) and are counted and
survived by the link; the others tell a technician what to check or what was refused.
"""

from __future__ import annotations

from drivers.errors import DriverError


class BridgeError(DriverError):
    """Root of every error the firmware bridge raises on purpose."""


class FrameError(BridgeError, ValueError):
    """Bytes between two delimiters are not a valid frame (COBS, CRC, length or kind)."""


class MessageError(BridgeError, ValueError):
    """A frame's payload is not a valid message (unknown type, wrong length, bad field)."""


class LinkError(BridgeError):
    """The serial link cannot be used: the port failed, or the co-processor stopped answering."""


class LinkTimeout(LinkError, TimeoutError):
    """The co-processor did not acknowledge or answer in time."""


class ProtocolVersionError(LinkError):
    """The co-processor speaks another version of the link protocol; update one side."""


class ImageError(BridgeError, ValueError):
    """A firmware image file is malformed, unsigned, wrongly signed or not newer: refused."""


class UpdateError(BridgeError):
    """A firmware update did not complete (the co-processor refused it, or it did not boot)."""

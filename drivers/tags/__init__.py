"""UHF RFID tag readers for the supervised warehouse (see reads.py for what they produce).

The readers here are on the Pi's own ports; a reader behind the field box is the bridge's
(firmware_bridge.sources chooses between the two)."""

from .errors import FrameError, PortError, ProtocolNotFound, TagError
from .factory import NATIVE_PROTOCOLS, PROTOCOLS, open_tag_reader
from .reads import ReaderHealth, TagRead, TagReader

__all__ = ["NATIVE_PROTOCOLS", "PROTOCOLS", "FrameError", "PortError", "ProtocolNotFound",
           "ReaderHealth", "TagError", "TagRead", "TagReader", "open_tag_reader"]

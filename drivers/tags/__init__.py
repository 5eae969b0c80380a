"""UHF RFID tag readers for the supervised warehouse (see reads.py for what they produce)."""

from .errors import FrameError, PortError, ProtocolNotFound, TagError
from .factory import PROTOCOLS, open_tag_reader
from .reads import ReaderHealth, TagRead, TagReader

__all__ = ["PROTOCOLS", "FrameError", "PortError", "ProtocolNotFound", "ReaderHealth",
           "TagError", "TagRead", "TagReader", "open_tag_reader"]

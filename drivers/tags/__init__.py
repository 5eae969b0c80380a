"""UHF RFID tag readers for the supervised warehouse (see reads.py for what they produce)."""

from .reads import ReaderHealth, TagRead, TagReader

__all__ = ["ReaderHealth", "TagRead", "TagReader"]

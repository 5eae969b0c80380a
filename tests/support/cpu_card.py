"""The virtual farmer CPU card for tests: see drivers/vpcd/cpu_card.py (shared with the demo)."""

from drivers.vpcd.cpu_card import (  # noqa: F401
    AID,
    SW_FILE_NOT_FOUND,
    SW_NOT_ALLOWED,
    SW_NOT_SELECTED,
    SW_RECORD_NOT_FOUND,
    SW_WRONG_LENGTH,
    BinaryFile,
    CpuFarmerCard,
    RecordFile,
    blank_files,
)

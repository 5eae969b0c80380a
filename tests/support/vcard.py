"""The virtual contact card for tests: see drivers/vpcd/card.py (shared with the demo)."""

from drivers.vpcd.card import (  # noqa: F401
    GET_ATR,
    POWER_OFF,
    POWER_ON,
    RESET,
    SW_INS_NOT_SUPPORTED,
    SW_NO_PRECISE_DIAGNOSIS,
    SW_OK,
    VirtualCard,
    VirtualReader,
    make_atr,
    wait_reader_state,
)

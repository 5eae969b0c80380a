"""What the card monitor reports, and the pure function that derives it from reader states.

Observers get one small frozen value per change, never pyscard's `(added, removed)` lists of
its own Card objects. `changes()` compares two snapshots {reader name: SlotState}; the monitor
thread only takes snapshots, so every rule about what counts as an insertion lives here and is
tested without pcscd.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from . import backend


@dataclass(frozen=True)
class ReaderAdded:
    reader: str


@dataclass(frozen=True)
class ReaderRemoved:
    reader: str


@dataclass(frozen=True)
class CardInserted:
    reader: str
    atr: bytes


@dataclass(frozen=True)
class CardWithdrawn:
    """The card is gone from `reader`; `atr` is the ATR it had."""

    reader: str
    atr: bytes


@dataclass(frozen=True)
class ServiceLost:
    """pcscd went away; every reader and card was reported removed just before this."""

    detail: str


@dataclass(frozen=True)
class ServiceRestored:
    """pcscd answers again; its readers and cards follow as ReaderAdded/CardInserted."""


MonitorEvent = (ReaderAdded | ReaderRemoved | CardInserted | CardWithdrawn | ServiceLost
                | ServiceRestored)


@dataclass(frozen=True)
class SlotState:
    """A reader's state as pcscd reported it: is a card there, its ATR, and pcscd's event
    counter (upper 16 bits of the event state), which tells a card swapped between two looks
    from the same card left in place."""

    present: bool
    atr: bytes = b""
    counter: int = 0

    @classmethod
    def from_event_state(cls, state: int, atr: bytes) -> SlotState:
        present = bool(state & backend.STATE_PRESENT)
        return cls(present, bytes(atr) if present else b"", (state >> 16) & 0xFFFF)


def reader_vanished(state: int) -> bool:
    """pcscd marks a reader unplugged while we waited on it as UNKNOWN (or UNAVAILABLE)."""
    return bool(state & (backend.STATE_UNKNOWN | backend.STATE_UNAVAILABLE))


def changes(before: Mapping[str, SlotState], after: Mapping[str, SlotState]
            ) -> list[MonitorEvent]:
    """The events that lead from snapshot `before` to snapshot `after`.

    A removed reader first loses its card; an added reader is announced before its card.
    """
    events: list[MonitorEvent] = []
    for reader, old in before.items():
        if reader not in after:
            if old.present:
                events.append(CardWithdrawn(reader, old.atr))
            events.append(ReaderRemoved(reader))
    for reader, new in after.items():
        old = before.get(reader)
        if old is None:
            events.append(ReaderAdded(reader))
            if new.present:
                events.append(CardInserted(reader, new.atr))
            continue
        swapped = old.present and new.present and (old.atr != new.atr
                                                   or old.counter != new.counter)
        if old.present and (not new.present or swapped):
            events.append(CardWithdrawn(reader, old.atr))
        if new.present and (not old.present or swapped):
            events.append(CardInserted(reader, new.atr))
    return events

"""Which moment chooses the price table in force: a trusted time, never a wall clock that may
be wrong.

A Raspberry Pi has no battery clock: after a power cut without network it may start at the
time fake-hwclock saved, hours or days behind, and would price with an expired table. The
station therefore chooses the table by:

1. the wall clock, while the kernel says it is synchronised (NTP): `trusted`;
2. else the bank's time received since this boot, carried forward by the monotonic clock:
   the backend's signed time hint (`time.hint`), or the ingest's clock in the signed ack that
   last moved the outbox's watermark (kept by the link): `trusted`;
3. else the last trusted time it knows (a synchronised clock it saw, a time hint, or the bank's
   clock as its signed commands showed it): the table in force *then*, `last_trusted`, for at
   most `[station] untrusted_time_max_h` after it (the time elapsed is the larger of what the
   wall clock and, within one boot, the monotonic clock say); past that, or with no trusted time
   ever, the station refuses to price and says why.

Each purchase records how its table was chosen (`table_chosen_by`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from agent.contract.clock import (
    boot_id,
    mono_ms,
    parse_utc_timestamp,
    time_note,
    utc_timestamp,
    wall_clock_synced,
)
from agent.errors import CocoonError

DEFAULT_MAX_UNTRUSTED_H = 72      # a weekend off the network, and a working day to notice
REMEMBER_EVERY_S = 60             # how often a synchronised clock is written down as trusted


class UntrustedTime(CocoonError):
    """The station cannot tell which price table is in force: its clock is not trusted."""


class TrustedTime:
    def __init__(self, outbox, max_untrusted_h: float = DEFAULT_MAX_UNTRUSTED_H, *,
                 synced: Callable[[], bool] = wall_clock_synced,
                 wall: Callable[[], float] = time.time):
        self.outbox = outbox
        self.max_untrusted_h = max_untrusted_h
        self.synced = synced
        self.wall = wall
        self._remembered_at = 0.0

    def now(self) -> tuple[datetime, str]:
        """The moment to choose the table by, and how it was found (`trusted` or
        `last_trusted`). Raises UntrustedTime."""
        wall_now = datetime.fromtimestamp(self.wall(), timezone.utc)
        if self.synced():
            self._remember(wall_now)
            return wall_now, "trusted"
        notes = [n for n in map(self._meta_json, ("time_hint", "ingest_time"))
                 if n and n.get("boot_id") == boot_id()]
        if notes:
            note = max(notes, key=lambda n: n["mono_ms"])      # the latest heard
            later = timedelta(milliseconds=mono_ms() - note["mono_ms"])
            return parse_utc_timestamp(note["utc"]) + later, "trusted"
        last, elapsed = self._last_trusted(wall_now)
        if last is None:
            raise UntrustedTime(
                "the station's clock is not synchronised and it has never had a trusted time "
                "(network time or the backend's signed time hint): it cannot tell which prices "
                "are in force. Connect it to the network")
        hours = elapsed.total_seconds() / 3600
        if hours > self.max_untrusted_h:
            raise UntrustedTime(
                f"the station's clock is not synchronised and its last trusted time "
                f"({utc_timestamp(last)}) is {hours:.0f} h old, more than "
                f"{self.max_untrusted_h:g} h: it cannot tell which prices are in force. "
                "Connect it to the network")
        return last, "last_trusted"

    # -- what is known --------------------------------------------------------------------

    def _last_trusted(self, wall_now: datetime) -> tuple[datetime | None, timedelta]:
        seen = []
        elapsed_mono = timedelta(0)
        for key in ("trusted_time", "time_hint", "ingest_time"):
            entry = self._meta_json(key)
            if entry:
                at = parse_utc_timestamp(entry["utc"])
                seen.append(at)
                if entry.get("boot_id") == boot_id():
                    elapsed_mono = max(elapsed_mono,
                                       timedelta(milliseconds=mono_ms() - entry["mono_ms"]))
        rows = self.outbox.read("SELECT value FROM meta WHERE key = 'command_clock'")
        if rows and rows[0][0]:
            seen.append(parse_utc_timestamp(rows[0][0]))
        if not seen:
            return None, timedelta(0)
        last = max(seen)
        return last, max(wall_now - last, elapsed_mono)

    def _remember(self, wall_now: datetime) -> None:
        if self.wall() - self._remembered_at < REMEMBER_EVERY_S:
            return
        self._remembered_at = self.wall()
        value = time_note(wall_now)
        self.outbox.write("INSERT INTO meta (key, value) VALUES ('trusted_time', ?) ON "
                          "CONFLICT(key) DO UPDATE SET value = excluded.value", [(value,)])

    def _meta_json(self, key: str) -> dict | None:
        rows = self.outbox.read("SELECT value FROM meta WHERE key = ?", (key,))
        if not rows or not rows[0][0]:
            return None
        try:
            return json.loads(rows[0][0])
        except ValueError:
            return None


def note_time_hint(execute, backend_utc: datetime) -> dict:
    """Within the transaction that records a verified `time.hint` (`within` of
    Outbox.append): keep the backend's time, with this boot's monotonic clock, as trusted."""
    execute("INSERT INTO meta (key, value) VALUES ('time_hint', ?) ON CONFLICT(key) DO UPDATE "
            "SET value = excluded.value", (time_note(backend_utc),))
    return {}

"""The backend's signed time hint (`time.hint`): recorded, never used to set the clock.

A Pi without a real-time clock may run for a while with a wrong wall clock. The agent never
orders anything by the wall clock (events carry the boot id and monotonic time), but the bank
wants to know how far a device's clock is off: each hint is recorded as a `clock.hint` event
with the offset between the device's clock and the backend's at the moment the hint arrived,
and kept, in the same transaction, as the trusted time a station chooses its price table by
while its own clock is not synchronised (agent.station.trusted_time).
An offset beyond `ALERT_OFFSET_S` is an alert: events signed with such a clock carry a `ts` to
read with care. Setting the clock is left to NTP (the agent runs without that privilege).

    body: {"utc": "2026-11-28T08:15:30.123456Z"}
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from agent.contract.clock import mono_ms, parse_utc_timestamp, utc_timestamp, wall_clock_synced
from agent.contract.events import Draft
from agent.errors import CocoonError
from agent.station.trusted_time import note_time_hint

ALERT_OFFSET_S = 60


def time_hint_handler(outbox, *, now: Callable[[], datetime] = lambda: datetime.now(
        timezone.utc)):
    def handle(cmd) -> dict:
        backend_time = _parse(cmd.body.get("utc"))
        device_time = now()
        offset_ms = round((device_time - backend_time).total_seconds() * 1000)
        priority = "alert" if abs(offset_ms) > ALERT_OFFSET_S * 1000 else "telemetry"
        outbox.append(Draft("clock.hint", priority, {
            "command_id": cmd.id, "backend_utc": utc_timestamp(backend_time),
            "device_utc": utc_timestamp(device_time), "offset_ms": offset_ms,
            "clock_synced": wall_clock_synced(), "mono_ms": mono_ms()}),
            within=lambda execute, seq: note_time_hint(execute, backend_time))
        return {"offset_ms": offset_ms}

    return handle


def _parse(text) -> datetime:
    """An RFC 3339 UTC timestamp, with or without fractions of a second."""
    if isinstance(text, str) and text.endswith("Z"):
        try:
            return parse_utc_timestamp(text)
        except ValueError:
            try:
                return datetime.fromisoformat(text).astimezone(timezone.utc)
            except ValueError:
                pass
    raise CocoonError(f"time.hint needs utc as an RFC 3339 UTC timestamp, got {text!r}")

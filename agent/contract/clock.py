"""Where an event stands in time on a device without a real-time clock.

A Raspberry Pi boots with a wrong wall clock until NTP syncs it. Every event therefore carries the
kernel's boot id, a monotonic time and a flag saying whether the wall clock was synchronised, so
the backend can place events from before the sync by (boot, mono_ms) instead of trusting `ts`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
_TIME_ERROR = 5  # adjtimex(2): clock not synchronised


@functools.lru_cache(maxsize=1)
def boot_id() -> str:
    """The kernel's random boot id (a UUID that changes at every boot; read once per process,
    since a process never outlives its boot)."""
    try:
        return str(uuid.UUID(BOOT_ID_PATH.read_text().strip()))
    except (OSError, ValueError):
        # Not Linux: a per-process id keeps (boot, mono_ms) unambiguous.
        return _FALLBACK_BOOT_ID


_FALLBACK_BOOT_ID = str(uuid.uuid4())


def mono_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def utc_timestamp(now: datetime | None = None) -> str:
    """RFC 3339 UTC with microseconds and a `Z`, e.g. 2026-05-01T08:00:00.000000Z."""
    now = now or datetime.now(timezone.utc)
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_utc_timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


@functools.lru_cache(maxsize=1)
def _adjtimex():
    # Looked up once: find_library() runs `ldconfig -p` in a subprocess on every call, and the
    # state is read for every sealed event inside the outbox's commit.
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return None
    try:
        return ctypes.CDLL(libc_name, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None


def _adjtimex_state() -> int | None:
    adjtimex = _adjtimex()
    if adjtimex is None:
        return None
    # struct timex is ~208 bytes on 64-bit Linux; modes=0 (first field) only reads the state.
    buf = ctypes.create_string_buffer(512)
    state = adjtimex(buf)
    return None if state < 0 else state


TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")


def wall_clock_synced() -> bool:
    """True when the kernel says NTP has synchronised the clock (adjtimex state != TIME_ERROR).

    Under the hardened systemd unit (ProtectClock=) adjtimex is refused; then the flag file
    that systemd-timesyncd keeps while synchronised decides.
    """
    state = _adjtimex_state()
    if state is None:
        return TIMESYNC_FLAG.exists()
    return state != _TIME_ERROR


def time_note(utc: datetime) -> str:
    """A trusted time as a device keeps it (the outbox's meta `time_hint`, `ingest_time`,
    `trusted_time`): the UTC moment, with this boot's id and monotonic clock at that moment,
    so that it can be carried forward by the monotonic clock within the same boot."""
    return json.dumps({"utc": utc_timestamp(utc), "mono_ms": mono_ms(), "boot_id": boot_id()})

"""What every tag reader hands the warehouse: reads and health, in one shape.

A serial "BB ... 7E" module, an LLRP reader on the network and a reader behind the field box's
co-processor all end here, so presence and custody never know which kind of reader saw a tag.

    reader.run(on_read, on_health, stop)    # blocks until `stop` is set; one thread per reader
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

_EPC = re.compile(r"^(?:[0-9a-f]{2})+$")

log = logging.getLogger(__name__)


def mono_ms() -> int:
    """Monotonic milliseconds, the clock every read and health report carries."""
    return time.monotonic_ns() // 1_000_000


@dataclass(frozen=True)
class TagRead:
    """One sighting of one tag by one antenna."""

    epc: str        # lowercase hex, whole bytes
    rssi: int       # dBm, usually negative
    antenna: int    # 1-based antenna (port) number
    mono_ms: int    # monotonic milliseconds when it arrived (time.monotonic_ns() // 10**6)

    def __post_init__(self) -> None:
        if not _EPC.match(self.epc):
            raise ValueError(f"EPC must be lowercase hex of whole bytes, got {self.epc!r}")


@dataclass(frozen=True)
class ReaderHealth:
    """The reader's state as its driver sees it. `online` False: it stopped answering, its
    port vanished, or it reports a fault; `detail` says which, in words for a technician."""

    reader: str     # the reader's name or port URL
    online: bool
    detail: str = ""
    mono_ms: int = 0


class TagReader(Protocol):
    """A source of tag reads. `run` owns the connection (opening, reconnecting) until `stop` is
    set; it reports every read and every change of health, and never raises for a fault of the
    reader or its link (that is a `ReaderHealth(online=False)`).

    `answers` counts every answer from the device, tags or not: an inventory round, a "no tag"
    reply, a keepalive, a heartbeat. It tells a reader that reads nothing because its field is
    empty (answers go on) from one that stopped answering; the warehouse counts the tags of the
    first as gone and of the second as unknown. A reader without it is judged by its reads
    alone."""

    name: str
    answers: int

    def run(self, on_read: Callable[[TagRead], None],
            on_health: Callable[[ReaderHealth], None], stop: threading.Event) -> None: ...


class HealthReporting:
    """A reader's side of `on_health`: each change reported once (one offline per outage, not
    one per failed reopen), logged, and a failing callback never stops the reader."""

    name: str
    _online: bool | None = None
    _on_health: Callable[[ReaderHealth], None] = staticmethod(lambda health: None)

    def _health(self, online: bool, detail: str) -> None:
        if online is self._online:
            return
        self._online = online
        log.log(logging.INFO if online else logging.WARNING, "tag reader %s %s: %s",
                self.name, "online" if online else "offline", detail)
        try:
            self._on_health(ReaderHealth(self.name, online, detail, mono_ms()))
        except Exception:
            log.exception("tag reader %s: health callback failed", self.name)

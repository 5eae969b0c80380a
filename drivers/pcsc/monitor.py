"""Card and reader events from one thread, surviving pcscd restarts and readers that come and go.

Built on SCardGetStatusChange directly rather than on pyscard's CardMonitor/ReaderMonitor:
those are process-wide singletons, print tracebacks to stderr, and stop for good on the first
"Service not available", which is exactly what a pcscd restart (a package upgrade, a crash, a
USB reset on the Pi) produces. Here:

- one thread waits on every reader plus the PnP pseudo-reader, so a card or a reader change
  wakes it at once, with `poll_s` as an upper bound;
- when pcscd goes away, every known card and reader is reported removed, then `ServiceLost`,
  one warning is logged, and a new context is tried with backoff (an old context never
  recovers: after a restart it answers "Service not available" forever);
- when pcscd is back, `ServiceRestored` is reported, then its readers and cards as new;
- a reader that vanishes or appears is reported from the reader list and the states pcscd
  returns (UNKNOWN for an unplugged reader), whichever comes first.

Observers are called in the monitor's thread, in order; one that raises is logged and the
others still run. Tested through the real pcscd with virtual cards (tests/test_pcsc_monitor.py):
insert and remove, pcscd stopped and started again with and without a reader, and `changes()`
on synthetic snapshots for a reader vanishing while pcscd keeps running, which the virtual
reader driver cannot do.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from . import backend
from .errors import PcscError, ReaderServiceUnavailable
from .events import (
    CardInserted,
    CardWithdrawn,
    MonitorEvent,
    ReaderAdded,
    ReaderRemoved,
    ServiceLost,
    ServiceRestored,
    SlotState,
    changes,
    reader_vanished,
)

log = logging.getLogger(__name__)

Observer = Callable[[MonitorEvent], None]


class CardMonitor:
    """Reports ReaderAdded/ReaderRemoved, CardInserted/CardWithdrawn and ServiceLost/
    ServiceRestored to observers. Readers and cards already there at `start()` are reported
    as added and inserted."""

    def __init__(self, observer: Observer | None = None, *, poll_s: float = 1.0,
                 retry_s: float = 0.2, retry_max_s: float = 5.0):
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.retry_max_s = retry_max_s
        self._observers: list[Observer] = [observer] if observer else []
        self._slots: dict[str, SlotState] = {}
        self._service_up: bool | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._context: backend.Context | None = None
        self._thread: threading.Thread | None = None

    def add_observer(self, observer: Observer) -> None:
        """Call `observer` with every later event. Added after `start()`, it misses the
        readers and cards already reported: `snapshot()` has them."""
        with self._lock:
            self._observers.append(observer)

    def remove_observer(self, observer: Observer) -> None:
        with self._lock:
            self._observers.remove(observer)

    def snapshot(self) -> dict[str, bytes | None]:
        """{reader: ATR of its card, or None when empty}, as last reported."""
        with self._lock:
            return {r: (s.atr if s.present else None) for r, s in self._slots.items()}

    @property
    def service_available(self) -> bool | None:
        """Whether pcscd answered at the last look (None before the first)."""
        return self._service_up

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> CardMonitor:
        if self.running:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pcsc-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            if self._context is not None:
                self._context.cancel()      # wakes status_change; harmless if pcscd is gone
        if self._thread is threading.current_thread():
            return                              # stopped by an observer: the loop ends itself
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("pcsc monitor: thread did not stop within %.1f s", timeout)
            self._thread = None

    def __enter__(self) -> CardMonitor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.retry_s
        while not self._stop.is_set():
            try:
                context = backend.Context()
            except ReaderServiceUnavailable as exc:
                self._service_lost(str(exc))
                self._stop.wait(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            except PcscError as exc:
                log.warning("pcsc monitor: %s; retrying", exc)
                self._stop.wait(self.retry_max_s)
                continue
            delay = self.retry_s
            with self._lock:
                self._context = context
            try:
                if self._service_up is not True:
                    self._service_up = True
                    log.info("pcsc monitor: pcscd available")
                    self._emit([ServiceRestored()])
                self._watch(context)
            except ReaderServiceUnavailable as exc:
                self._service_lost(str(exc))
            except Exception:
                # Unexpected (a bug, or a PC/SC code nobody has seen yet): keep monitoring.
                log.exception("pcsc monitor: unexpected failure; starting over")
                self._stop.wait(self.retry_s)
            finally:
                with self._lock:
                    self._context = None
                context.close()

    def _watch(self, context: backend.Context) -> None:
        """Wait for changes on one context until it fails or the monitor stops."""
        raw: dict[str, int] = {}
        while not self._stop.is_set():
            names = context.list_readers()
            current = {n: s for n, s in self._slots.items() if n in names}
            self._update(current)
            raw = {n: raw.get(n, backend.STATE_UNAWARE) for n in names}
            query = [(backend.PNP_NOTIFICATION, len(names) << 16)] + list(raw.items())
            code, result = context.status_change(query, self.poll_s)
            if code in (backend.TIMEOUT, backend.CANCELLED, backend.UNKNOWN_READER):
                continue      # UNKNOWN_READER: one vanished between listing and waiting
            if code != backend.SUCCESS:
                log.warning("pcsc monitor: waiting for events failed: %s",
                            backend.describe(code))
                self._stop.wait(self.retry_s)
                continue
            after = dict(current)
            for name, state, atr in result[1:]:
                if reader_vanished(state):
                    after.pop(name, None)
                    raw.pop(name, None)
                else:
                    after[name] = SlotState.from_event_state(state, atr)
                    raw[name] = state & ~backend.STATE_CHANGED
            self._update(after)

    def _update(self, after: dict[str, SlotState]) -> None:
        with self._lock:
            events = changes(self._slots, after)
            self._slots = dict(after)
        self._emit(events)

    def _service_lost(self, detail: str) -> None:
        if self._service_up is False:
            return
        self._update({})
        self._service_up = False
        log.warning("pcsc monitor: %s; retrying", detail)
        self._emit([ServiceLost(detail)])

    def _emit(self, events: list[MonitorEvent]) -> None:
        with self._lock:
            observers = list(self._observers)
        for event in events:
            _log_event(event)
            for observer in observers:
                try:
                    observer(event)
                except Exception:
                    log.exception("pcsc monitor: observer %r failed on %r", observer, event)


def _log_event(event: MonitorEvent) -> None:
    if isinstance(event, CardInserted | CardWithdrawn):
        verb = "inserted" if isinstance(event, CardInserted) else "removed"
        log.info("pcsc: card %s reader=%r atr=%s", verb, event.reader, event.atr.hex())
    elif isinstance(event, ReaderAdded | ReaderRemoved):
        verb = "added" if isinstance(event, ReaderAdded) else "removed"
        log.info("pcsc: reader %s reader=%r", verb, event.reader)

"""systemd's notify protocol (sd_notify), and a watchdog that pings only on real progress.

`Type=notify` units tell systemd when they are ready (`READY=1`), alive (`WATCHDOG=1`) and
stopping (`STOPPING=1`) through a datagram to `$NOTIFY_SOCKET`. A watchdog that pings from a
timer thread would keep a stuck agent alive forever; here each ping first asks the agent whether
its main loop has moved since the last ping, so a stuck loop makes systemd restart the service.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None):
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self.address = address or None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send `KEY=value` lines; False (never an exception) when there is no socket."""
        if not self.enabled:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError as exc:
            log.warning("sd_notify to %r failed: %s", self.address, exc)
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")


def watchdog_interval_s() -> float | None:
    """Half of `$WATCHDOG_USEC` (systemd's advice), or None when no watchdog is set."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000 / 2
    except ValueError:
        return None


class Watchdog:
    """Pings `WATCHDOG=1` every `interval_s` while `progress()` says the loop has moved."""

    def __init__(self, notifier: Notifier, interval_s: float, progress: Callable[[], object]):
        self.notifier = notifier
        self.interval_s = interval_s
        self.progress = progress
        self.pings = 0
        self.missed = 0

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self._run, args=(stop,), name="watchdog", daemon=True)
        thread.start()
        return thread

    def _run(self, stop: threading.Event) -> None:
        last = self.progress()
        while not stop.wait(self.interval_s):
            now = self.progress()
            if now != last:
                self.notifier.notify("WATCHDOG=1")
                self.pings += 1
            else:
                self.missed += 1
                log.error("main loop has not moved for %.0f s; withholding the watchdog ping",
                          self.interval_s)
            last = now

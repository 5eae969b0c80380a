"""`BB7EReader`: a "BB ... 7E" UHF module on a serial port, as a `TagReader`.

The module is put in multi-poll mode and its tag notices become `TagRead`s. The port is read by
`drivers.serialport.ReopeningReader`, the loop every serial driver runs, with this reader as its
protocol: an unplugged USB adapter (SerialException/OSError on read) or a module that answers
nothing at all for `silence_s` is reported as `ReaderHealth(online=False)`, the port is closed
and reopened with exponential backoff, and multi-poll is started again. `online=True` is
reported when a valid frame arrives, not when the port opens: an open port says nothing about
the module behind it. Every valid frame, the "no tag" answer included, adds one to `answers`:
a module that answers but reads nothing is watching an empty field, not broken.

A module in multi-poll stops by itself after its poll count, and an empty field may yield no
frames at all; so after `silence_s / 2` without a frame the reader probes: stop, one single
inventory (answered by notices or the "no tag" error frame) and multi-poll again. Only a module
that answers neither is offline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from drivers.serialport import (
    PORT_ERRORS,
    PortProtocol,
    ReopeningReader,
    SerialPort,
    serial_for_url,
)

from . import bb7e
from .errors import FrameError
from .reads import HealthReporting, ReaderHealth, TagRead, mono_ms

log = logging.getLogger(__name__)

#: Rejected frames and error frames, handed to `on_error` for technicians' tools.
Rejected = FrameError | bb7e.ErrorFrame


class BB7EReader(HealthReporting, PortProtocol):
    """One module on `url` (anything `serial_for_url` accepts; 115200 8N1 by default).

    `antenna` is reported for notices that do not carry an antenna byte (single-port modules).
    `on_error` is called from the reading thread with every rejected frame and every module
    error other than "no tag"; `open_port` is the seam for other transports.
    """

    def __init__(self, url: str, *, name: str | None = None, antenna: int = 1,
                 silence_s: float = 10.0, baudrate: int = bb7e.BAUDRATE,
                 poll_count: int = bb7e.MAX_POLLS, read_timeout: float = 0.05,
                 backoff_initial: float = 0.2, backoff_max: float = 5.0,
                 on_error: Callable[[Rejected], None] | None = None,
                 open_port: Callable[..., SerialPort] = serial_for_url):
        if antenna < 1:
            raise ValueError(f"antenna numbers start at 1, got {antenna}")
        if silence_s <= 0:
            raise ValueError("silence_s must be positive")
        self.url, self.name = url, name or url
        self.antenna, self.silence_s, self.baudrate = antenna, silence_s, baudrate
        self.poll_count, self.read_timeout = poll_count, read_timeout
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.on_error = on_error
        self._open_port = open_port
        self.reads = 0
        self.answers = 0        # valid frames from the module, "no tag" included
        self.rejected = 0
        self._last_error_log = float("-inf")
        self._errors_since_log = 0
        self._on_read: Callable[[TagRead], None] = lambda read: None
        self._stop = threading.Event()
        self._loop: ReopeningReader | None = None
        self._port: SerialPort | None = None
        self._decoder = bb7e.Decoder()
        self._last_answer = 0.0
        self._probed = False

    # -- TagReader ----------------------------------------------------------------------------

    def run(self, on_read: Callable[[TagRead], None],
            on_health: Callable[[ReaderHealth], None], stop: threading.Event) -> None:
        self._on_read, self._on_health, self._stop = on_read, on_health, stop
        self._loop = ReopeningReader(self.url, self, settings={"baudrate": self.baudrate},
                                     read_timeout=self.read_timeout, open_port=self._open_port,
                                     backoff_initial=self.backoff_initial,
                                     backoff_max=self.backoff_max, stop=stop, name=self.name)
        self._loop.run()

    # -- the port's protocol (called by the loop, in run's thread) -------------------------------

    def open_failed(self, exc: Exception) -> None:
        if isinstance(exc, ValueError):  # a bad URL or setting: a technician must fix it
            self._health(False, f"cannot use {self.url}: {exc}")
        else:
            self._health(False, f"cannot open {self.url}: {exc}")

    def connection_made(self, port: SerialPort) -> None:
        self._port, self._decoder = port, bb7e.Decoder()
        self._last_answer, self._probed = time.monotonic(), False
        self._write(bb7e.multi_poll(self.poll_count))

    def data_received(self, data: bytes) -> None:
        for item in self._decoder.feed(data):
            if self._handle(item, self._on_read):
                self._last_answer, self._probed = time.monotonic(), False
                self._loop.reset_backoff()

    def tick(self) -> None:
        """Silence: after `silence_s / 2` probe the module once; after `silence_s` it is
        offline, and the port is closed and opened again."""
        quiet = time.monotonic() - self._last_answer
        if quiet >= self.silence_s:
            self._health(False, f"no answer from the module for {self.silence_s:g} s "
                                "(switched off, cable, or wrong baud rate)")
            self._loop.reopen()
        elif quiet >= self.silence_s / 2 and not self._probed:
            self._probed = True
            self._write(bb7e.stop() + bb7e.single_inventory() + bb7e.multi_poll(self.poll_count))

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self._health(False, f"port {self.url} failed: {exc or type(exc).__name__}")
        elif self._stop.is_set():           # stopping: leave the module quiet
            try:
                self._write(bb7e.stop())
            except PORT_ERRORS:
                pass
        for item in self._decoder.flush():
            self._handle(item, self._on_read)
        self._port = None

    def _handle(self, item, on_read) -> bool:
        """Deliver one decoded item; True if it was a valid frame from the module."""
        if isinstance(item, FrameError):
            self._reject(item)
            return False
        self.answers += 1
        self._health(True, "answering")
        if isinstance(item, bb7e.TagNotice):
            read = TagRead(item.epc_hex, item.rssi, item.antenna or self.antenna, mono_ms())
            self.reads += 1
            try:
                on_read(read)
            except Exception:  # the caller's code must not end the reader
                log.exception("tag reader %s: read callback failed", self.name)
        elif isinstance(item, bb7e.ErrorFrame) and not item.no_tag:
            self._reject(item)
        return True

    def _write(self, data: bytes) -> None:
        self._port.write(data)
        self._port.flush()

    # -- reporting ------------------------------------------------------------------------------

    def _reject(self, item: Rejected) -> None:
        """Count, hand to on_error, and log at most one line a minute (noise can be a flood)."""
        self.rejected += 1
        self._errors_since_log += 1
        now = time.monotonic()
        if now - self._last_error_log >= 60:
            text = item if isinstance(item, FrameError) else f"module error: {item.meaning}"
            log.warning("tag reader %s: %d frame(s) rejected, latest: %s", self.name,
                        self._errors_since_log, text)
            self._last_error_log, self._errors_since_log = now, 0
        if self.on_error is not None:
            try:
                self.on_error(item)
            except Exception:
                log.exception("tag reader %s: error callback failed", self.name)

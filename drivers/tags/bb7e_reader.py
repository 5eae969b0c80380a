"""`BB7EReader`: a "BB ... 7E" UHF module on a serial port, as a `TagReader`.

The module is put in multi-poll mode and its tag notices become `TagRead`s. The loop owns the
port: an unplugged USB adapter (SerialException/OSError on read) or a module that answers
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

import serial

from . import bb7e
from .errors import FrameError
from .reads import HealthReporting, ReaderHealth, TagRead, mono_ms

log = logging.getLogger(__name__)

#: Rejected frames and error frames, handed to `on_error` for technicians' tools.
Rejected = FrameError | bb7e.ErrorFrame


class BB7EReader(HealthReporting):
    """One module on `url` (anything `serial.serial_for_url` accepts; 115200 8N1 by default).

    `antenna` is reported for notices that do not carry an antenna byte (single-port modules).
    `on_error` is called from the reading thread with every rejected frame and every module
    error other than "no tag"; `open_port` is the seam for other transports.
    """

    def __init__(self, url: str, *, name: str | None = None, antenna: int = 1,
                 silence_s: float = 10.0, baudrate: int = bb7e.BAUDRATE,
                 poll_count: int = bb7e.MAX_POLLS, read_timeout: float = 0.05,
                 backoff_initial: float = 0.2, backoff_max: float = 5.0,
                 on_error: Callable[[Rejected], None] | None = None,
                 open_port: Callable[..., serial.SerialBase] = serial.serial_for_url):
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

    # -- TagReader ----------------------------------------------------------------------------

    def run(self, on_read: Callable[[TagRead], None],
            on_health: Callable[[ReaderHealth], None], stop: threading.Event) -> None:
        self._on_health = on_health
        delay = self.backoff_initial
        while not stop.is_set():
            try:
                port = self._open_port(self.url, baudrate=self.baudrate,
                                       timeout=self.read_timeout)
            except ValueError as exc:  # a bad URL or setting: a technician must fix it
                self._health(False, f"cannot use {self.url}: {exc}")
                stop.wait(self.backoff_max)
                continue
            except (serial.SerialException, OSError) as exc:
                self._health(False, f"cannot open {self.url}: {exc}")
                stop.wait(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            decoder = bb7e.Decoder()
            try:
                if self._session(port, decoder, on_read, stop):
                    delay = self.backoff_initial
            except (serial.SerialException, OSError) as exc:
                self._health(False, f"port {self.url} failed: {exc or type(exc).__name__}")
            finally:
                for item in decoder.flush():
                    self._handle(item, on_read)
                try:
                    port.close()
                except (serial.SerialException, OSError):
                    pass
            if not stop.is_set():
                stop.wait(delay)
                delay = min(delay * 2, self.backoff_max)

    # -- one open port --------------------------------------------------------------------------

    def _session(self, port, decoder: bb7e.Decoder, on_read, stop: threading.Event) -> bool:
        """Read until stopped (True if the module answered) or silent (False); raises the
        port's errors."""
        self._write(port, bb7e.multi_poll(self.poll_count))
        answered = False
        last = time.monotonic()
        probed = False
        while not stop.is_set():
            data = port.read(port.in_waiting or 1)
            now = time.monotonic()
            if data:
                for item in decoder.feed(data):
                    if self._handle(item, on_read):
                        answered, last, probed = True, now, False
            quiet = now - last
            if quiet >= self.silence_s:
                self._health(False, f"no answer from the module for {self.silence_s:g} s "
                                    "(switched off, cable, or wrong baud rate)")
                return answered
            if quiet >= self.silence_s / 2 and not probed:
                probed = True
                self._write(port, bb7e.stop() + bb7e.single_inventory()
                            + bb7e.multi_poll(self.poll_count))
        try:
            self._write(port, bb7e.stop())
        except (serial.SerialException, OSError):
            pass
        return answered

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

    @staticmethod
    def _write(port, data: bytes) -> None:
        port.write(data)
        port.flush()

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

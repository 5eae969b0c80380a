"""Serial ports: the one module that imports pyserial, and the one loop that keeps a port read.

Every serial device of the agent (scales, "BB ... 7E" tag readers, the field box's UART) and
their simulators reach pyserial through here, so its API is met once: ports are opened by URL
(`serial_for_url`: a device path, `socket://host:port`, `spy://...`, `loop://`), and a port
that fails raises one of `PORT_ERRORS`.

`ReopeningReader` is the reading loop every serial driver runs. It follows pyserial's
`serial.threaded` pattern: framing and parsing live in a protocol object (a `PortProtocol`),
which the loop calls with `connection_made(port)`, `data_received(bytes)` and
`connection_lost(exc)`. Unlike `serial.threaded.ReaderThread`, which ends with its port, the loop
outlives it: an unplugged USB adapter raises on read, the loop closes the port, waits (doubling
the wait from `backoff_initial` up to `backoff_max`) and opens the URL again, telling the
protocol each time. So the backoff and the close-and-reopen are written once, not per driver.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import serial

#: An open port, for annotations.
SerialPort = serial.SerialBase

#: Opens a port by URL with pyserial's keyword settings; raises ValueError for a URL or setting
#: pyserial refuses and one of PORT_ERRORS for a port that cannot be opened. The loop's default.
serial_for_url = serial.serial_for_url

#: What a port raises when it cannot be opened, or fails on read or write (an unplugged USB
#: adapter, a dropped TCP connection). pyserial's SerialException is an OSError; it is named
#: anyway, for the reader.
PORT_ERRORS: tuple[type[Exception], ...] = (serial.SerialException, OSError)


def open_port(url: str, *, error: type[Exception], what: str = "port",
              **settings) -> SerialPort:
    """Open `url` with `settings` (`serial_for_url`'s keywords: baudrate, timeout...).

    pyserial's failures, a URL it does not know included, become the caller's own `error`
    ("cannot open {what} {url}: ..."), so a driver's callers catch the driver's errors only."""
    try:
        return serial.serial_for_url(url, **settings)
    except (*PORT_ERRORS, ValueError) as exc:
        raise error(f"cannot open {what} {url}: {exc}") from None


def close_quietly(port: SerialPort) -> None:
    """Close `port`; a port that already failed may fail to close, which changes nothing."""
    try:
        port.close()
    except PORT_ERRORS:
        pass


class PortProtocol:
    """What `ReopeningReader` calls, from its thread, in this order for each port it opens:
    `connection_made`, then `data_received` and `tick` while it reads, then `connection_lost`.
    The methods here do nothing; a driver overrides those it needs. A method that raises one of
    PORT_ERRORS ends the port's session as a failed read does."""

    def open_failed(self, exc: Exception) -> None:
        """The URL could not be opened: ValueError for a URL or setting pyserial refuses
        (retried after `backoff_max`, unless the protocol stops the loop), else a port error
        (retried with backoff)."""

    def connection_made(self, port: SerialPort) -> None:
        """The port is open; write to it from here on if the device must be asked."""

    def data_received(self, data: bytes) -> None:
        """Bytes arrived, in order, as the port gave them (frames may be cut anywhere)."""

    def tick(self) -> None:
        """Called after every read, data or not (at least every read timeout while the line is
        quiet): the place for silence timers. `ReopeningReader.reopen` ends the session."""

    def connection_lost(self, exc: Exception | None) -> None:
        """The session ends; the port is still open and is closed right after. `exc` is the
        port's failure, or None when the loop stops or the protocol asked to reopen."""

    def finished(self) -> None:
        """The loop has ended (stopped); nothing is called after this."""


class ReopeningReader:
    """Reads `url` for `protocol` until stopped, reopening the port whenever it fails.

    `settings` are `serial_for_url`'s keywords; `read_timeout` is how long one read waits, and
    so how often `tick` runs on a quiet line. `open_port` is the seam for tests and for other
    transports: it gets the URL and those keywords. `stop` may be an event the caller owns (a
    tag reader's `run` is stopped by its caller's event). `run` loops in the calling thread;
    `start` runs it in a daemon thread named `name`.
    """

    def __init__(self, url: str, protocol: PortProtocol, *,
                 settings: Mapping[str, object] | None = None, read_timeout: float = 0.05,
                 open_port: Callable[..., SerialPort] = serial_for_url,
                 backoff_initial: float = 0.2, backoff_max: float = 5.0,
                 stop: threading.Event | None = None, name: str | None = None):
        self.url, self.protocol = url, protocol
        self.settings = dict(settings or {})
        self.read_timeout = read_timeout
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.name = name or f"serial {url}"
        self.port: SerialPort | None = None
        self._open_port = open_port
        self._stop = stop if stop is not None else threading.Event()
        self._reopen = threading.Event()
        self._delay = backoff_initial
        self._thread: threading.Thread | None = None

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> ReopeningReader:
        """Run the loop in its own thread; calling it again does nothing."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, daemon=True, name=self.name)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop: a blocked read is cancelled where the port can, the port is closed,
        and the thread (if `start` made one) is waited for."""
        self._stop.set()
        port = self.port
        if port is not None and hasattr(port, "cancel_read"):
            try:
                port.cancel_read()
            except PORT_ERRORS:
                pass
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- for the protocol -----------------------------------------------------------------------

    def reopen(self, *, later: bool = False) -> None:
        """End this port's session (a device that stopped answering): the port is closed and
        opened again after the backoff wait; the longest one if `later` (a device that will
        not change its mind soon, such as one speaking another protocol version)."""
        if later:
            self._delay = self.backoff_max
        self._reopen.set()

    def reset_backoff(self) -> None:
        """The device answered: the next wait before reopening starts again from
        `backoff_initial`."""
        self._delay = self.backoff_initial

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> None:
        """Open, read, and reopen until stopped, in the calling thread."""
        try:
            while not self._stop.is_set():
                try:
                    port = self._open_port(self.url, timeout=self.read_timeout,
                                           **self.settings)
                except ValueError as exc:  # a bad URL or setting: soon is no better than later
                    self.protocol.open_failed(exc)
                    self._stop.wait(self.backoff_max)
                    continue
                except PORT_ERRORS as exc:
                    self.protocol.open_failed(exc)
                    self._back_off()
                    continue
                self._session(port)
                if not self._stop.is_set():
                    self._back_off()
        finally:
            self.protocol.finished()

    def _session(self, port: SerialPort) -> None:
        self._reopen.clear()
        self.port = port
        error: Exception | None = None
        try:
            self.protocol.connection_made(port)
            while not self._stop.is_set() and not self._reopen.is_set():
                data = port.read(port.in_waiting or 1)
                if data:
                    self.protocol.data_received(data)
                self.protocol.tick()
        except PORT_ERRORS as exc:
            error = exc
        finally:
            try:
                self.protocol.connection_lost(error)
            finally:
                self.port = None
                close_quietly(port)

    def _back_off(self) -> None:
        self._stop.wait(self._delay)
        self._delay = min(self._delay * 2, self.backoff_max)

"""The scale reader: one port, read by the serial loop, feeding a `Decoder` and handing every
event to a callback.

Like pyserial's `serial.threaded`, framing and parsing (the `Decoder`) are kept apart from the
thread that reads, which is `drivers.serialport.ReopeningReader`, the loop every serial driver
runs. It survives the port: an unplugged USB adapter raises SerialException or OSError on read,
which is reported as `LinkEvent(LOST)`; the loop then reopens the URL with exponential backoff
and `OPEN` is reported when it is back. A continuous indicator that stops talking is reported
as `SILENT` (switched off, cable pulled at the indicator end, wrong baud rate).

Commands (MT-SICS, XK3190-A9 command mode) are written from the caller's thread; `request`
waits for the frame that answers it while the reading thread keeps delivering everything else.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from drivers.serialport import (
    PORT_ERRORS,
    PortProtocol,
    ReopeningReader,
    SerialPort,
    serial_for_url,
)

from .command import Command
from .decoder import Decoder
from .errors import CommandFailed, CommandTimeout, FrameError, PortError, UnitChanged
from .protocols import Protocol, SerialSettings, get_protocol
from .reading import Reading, Reply

log = logging.getLogger(__name__)


class LinkState(enum.Enum):
    OPEN = "open"        # the port is open (and data flows, for continuous indicators)
    SILENT = "silent"    # open, but a continuous indicator has sent nothing for silence_s
    LOST = "lost"        # the port failed or cannot be opened; retrying with backoff
    CLOSED = "closed"    # the reader stopped (or the URL is invalid: see detail)


@dataclass(frozen=True)
class LinkEvent:
    state: LinkState
    port: str
    detail: str = ""


ReaderEvent = Reading | Reply | FrameError | LinkEvent
_AUTO = object()


class _Pending:
    def __init__(self, answers: Callable[[bytes], bool]):
        self.answers = answers
        self.done = threading.Event()
        self.result: Reading | Reply | None = None


class ScaleReader(PortProtocol):
    """Reads one scale on `url` (anything `serial_for_url` accepts) with `protocol`
    (a Protocol or a spec string for `get_protocol`).

    `on_event` is called from the reader thread with each Reading, Reply, FrameError and
    LinkEvent, in order; it should return quickly. `silence_s` defaults to 2 s for continuous
    protocols and off for ask-and-answer ones. `open_port` is the seam for tests and for
    other transports; it gets the URL and `serial_for_url`'s keyword arguments.

    The reader is the port's protocol (`drivers.serialport.PortProtocol`): the loop calls its
    `connection_made`, `data_received`, `tick` and `connection_lost`.
    """

    def __init__(self, url: str, protocol: Protocol | str, on_event: Callable[[ReaderEvent], None],
                 *, settings: SerialSettings | None = None, baudrate: int | None = None,
                 silence_s: float | None | object = _AUTO, read_timeout: float = 0.05,
                 backoff_initial: float = 0.2, backoff_max: float = 5.0,
                 open_port: Callable[..., SerialPort] = serial_for_url,
                 name: str | None = None):
        self.url = url
        self.protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
        self.on_event = on_event
        self.settings = settings or self.protocol.serial
        if baudrate is not None:
            self.settings = SerialSettings(**{**self.settings.as_kwargs(), "baudrate": baudrate})
        self.silence_s = ((2.0 if self.protocol.continuous else None)
                          if silence_s is _AUTO else silence_s)
        self._decoder = Decoder(self.protocol)
        self._stop = threading.Event()
        self._port: SerialPort | None = None
        self._last_data = 0.0
        self._write_lock = threading.Lock()
        self._request_lock = threading.Lock()
        self._pending: _Pending | None = None
        self._loop = ReopeningReader(url, self, settings=self.settings.as_kwargs(),
                                     read_timeout=read_timeout, open_port=open_port,
                                     backoff_initial=backoff_initial, backoff_max=backoff_max,
                                     stop=self._stop, name=name or f"scale-reader {url}")
        self.state: LinkState | None = None

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> ScaleReader:
        """Start the reading thread; calling it again does nothing."""
        self._loop.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading and close the port; wait for the thread."""
        self._loop.stop(timeout)

    def __enter__(self) -> ScaleReader:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._loop.running

    # -- commands --------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write raw bytes to the port. Raises PortError if it is not open or fails."""
        with self._write_lock:
            port = self._port
            if port is None:
                raise PortError(f"scale port {self.url} is not open ({self._state_text()})")
            try:
                port.write(data)
                port.flush()
            except PORT_ERRORS as exc:
                raise PortError(f"writing to scale port {self.url} failed: {exc}") from exc

    def request(self, command: Command | str, timeout: float = 2.0) -> Reading | Reply:
        """Send `command` (a Command, or a name for the protocol's `command`) and return the
        frame that answers it. Raises CommandTimeout, CommandFailed (MT-SICS ES/ET/EL),
        CommandUnsupported or PortError. One request at a time; others wait their turn."""
        if isinstance(command, str):
            command = self.protocol.command(command)
        with self._request_lock:
            pending = _Pending(command.answers)
            self._pending = pending
            try:
                self.send(command.data)
                if not pending.done.wait(timeout):
                    raise CommandTimeout(f"no answer to {command.name} from {self.url} within "
                                         f"{timeout:g} s ({self._state_text()})")
            finally:
                self._pending = None
        result = pending.result
        if isinstance(result, Reply) and result.is_error:
            meaning = {"ES": "syntax error", "ET": "transmission error",
                       "EL": "logical error"}[result.command]
            raise CommandFailed(f"{command.name}: the balance answered {result.command} "
                                f"({meaning})", result)
        return result

    # -- the port's protocol (called from the reading thread) --------------------------------

    def open_failed(self, exc: Exception) -> None:
        if isinstance(exc, ValueError):  # bad URL or setting: retrying cannot help
            self._set_state(LinkState.CLOSED, f"cannot use {self.url}: {exc}")
            self._stop.set()
        else:
            self._set_state(LinkState.LOST, f"cannot open: {exc}")

    def connection_made(self, port: SerialPort) -> None:
        self._port = port
        self._set_state(LinkState.OPEN)
        self._last_data = time.monotonic()

    def data_received(self, data: bytes) -> None:
        self._last_data = time.monotonic()
        self._loop.reset_backoff()
        if self.state is LinkState.SILENT:
            self._set_state(LinkState.OPEN, "data again")
        for event in self._decoder.feed(data):
            self._deliver(event)

    def tick(self) -> None:
        if (self.silence_s is not None and self.state is LinkState.OPEN
                and time.monotonic() - self._last_data >= self.silence_s):
            self._set_state(LinkState.SILENT, f"no data for {self.silence_s:g} s")

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self._set_state(LinkState.LOST, str(exc) or type(exc).__name__)
        with self._write_lock:
            self._port = None
        for event in self._decoder.reset():
            self._deliver(event)

    def finished(self) -> None:
        if self.state is not LinkState.CLOSED:
            self._set_state(LinkState.CLOSED)

    # -- delivering ------------------------------------------------------------------------

    def _deliver(self, event: ReaderEvent) -> None:
        pending = self._pending
        answer = event.reading if isinstance(event, UnitChanged) else event
        if (pending is not None and not pending.done.is_set()
                and isinstance(answer, Reading | Reply) and pending.answers(answer.raw)):
            pending.result = answer
            pending.done.set()
        try:
            self.on_event(event)
        except Exception:  # the callback is the caller's code; it must not end the loop
            log.exception("scale reader %s: event callback failed", self.url)

    def _set_state(self, state: LinkState, detail: str = "") -> None:
        """Report a change once: LOST once per loss, not once per failed reopen."""
        if state is self.state:
            return
        self.state = state
        level = logging.INFO if state in (LinkState.OPEN, LinkState.CLOSED) else logging.WARNING
        log.log(level, "scale port %s %s%s", self.url, state.value,
                f": {detail}" if detail else "")
        self._deliver(LinkEvent(state, self.url, detail))

    def _state_text(self) -> str:
        return f"port {self.state.value}" if self.state else "port not yet opened"

"""The reader loop: one thread per port, opening a pyserial URL, feeding a `Decoder`, handing
every event to a callback, and reopening a port that vanished.

Like pyserial's `serial.threaded`, framing and parsing (the `Decoder`) are kept apart from the
thread that reads. Unlike it, the loop survives the port: an unplugged USB adapter raises
SerialException or OSError on read, which is reported as `LinkEvent(LOST)`; the loop then
reopens the URL with exponential backoff and reports `OPEN` when it is back. A continuous
indicator that stops talking is reported as `SILENT` (switched off, cable pulled at the
indicator end, wrong baud rate).

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

import serial

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


class ScaleReader:
    """Reads one scale on `url` (anything `serial.serial_for_url` accepts) with `protocol`
    (a Protocol or a spec string for `get_protocol`).

    `on_event` is called from the reader thread with each Reading, Reply, FrameError and
    LinkEvent, in order; it should return quickly. `silence_s` defaults to 2 s for continuous
    protocols and off for ask-and-answer ones. `open_port` is the seam for tests and for
    other transports; it gets the URL and `serial_for_url`'s keyword arguments.
    """

    def __init__(self, url: str, protocol: Protocol | str, on_event: Callable[[ReaderEvent], None],
                 *, settings: SerialSettings | None = None, baudrate: int | None = None,
                 silence_s: float | None | object = _AUTO, read_timeout: float = 0.05,
                 backoff_initial: float = 0.2, backoff_max: float = 5.0,
                 open_port: Callable[..., serial.SerialBase] = serial.serial_for_url,
                 name: str | None = None):
        self.url = url
        self.protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
        self.on_event = on_event
        self.settings = settings or self.protocol.serial
        if baudrate is not None:
            self.settings = SerialSettings(**{**self.settings.as_kwargs(), "baudrate": baudrate})
        self.silence_s = ((2.0 if self.protocol.continuous else None)
                          if silence_s is _AUTO else silence_s)
        self.read_timeout = read_timeout
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self._open_port = open_port
        self._decoder = Decoder(self.protocol)
        self._stop = threading.Event()
        self._port: serial.SerialBase | None = None
        self._write_lock = threading.Lock()
        self._request_lock = threading.Lock()
        self._pending: _Pending | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=name or f"scale-reader {url}")
        self.state: LinkState | None = None

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> ScaleReader:
        """Start the reading thread; calling it again does nothing."""
        if self._thread.ident is None:
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading and close the port; wait for the thread."""
        self._stop.set()
        port = self._port
        if port is not None and hasattr(port, "cancel_read"):
            try:
                port.cancel_read()
            except (serial.SerialException, OSError):
                pass
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> ScaleReader:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

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
            except (serial.SerialException, OSError) as exc:
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

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.backoff_initial
        try:
            while not self._stop.is_set():
                try:
                    port = self._open_port(self.url, timeout=self.read_timeout,
                                           **self.settings.as_kwargs())
                except ValueError as exc:  # bad URL or setting: retrying cannot help
                    self._set_state(LinkState.CLOSED, f"cannot use {self.url}: {exc}")
                    return
                except (serial.SerialException, OSError) as exc:
                    self._set_state(LinkState.LOST, f"cannot open: {exc}")
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.backoff_max)
                    continue
                self._port = port
                self._set_state(LinkState.OPEN)
                try:
                    if self._pump(port):
                        delay = self.backoff_initial
                except (serial.SerialException, OSError) as exc:
                    self._set_state(LinkState.LOST, str(exc) or type(exc).__name__)
                finally:
                    with self._write_lock:
                        self._port = None
                    try:
                        port.close()
                    except (serial.SerialException, OSError):
                        pass
                    for event in self._decoder.reset():
                        self._deliver(event)
                if not self._stop.is_set():
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.backoff_max)
        finally:
            if self.state is not LinkState.CLOSED:
                self._set_state(LinkState.CLOSED)

    def _pump(self, port: serial.SerialBase) -> bool:
        """Read until stopped (returns) or the port fails (raises). True if data came."""
        got_data = False
        last = time.monotonic()
        while not self._stop.is_set():
            data = port.read(port.in_waiting or 1)
            now = time.monotonic()
            if data:
                got_data, last = True, now
                if self.state is LinkState.SILENT:
                    self._set_state(LinkState.OPEN, "data again")
                for event in self._decoder.feed(data):
                    self._deliver(event)
            elif (self.silence_s is not None and self.state is LinkState.OPEN
                  and now - last >= self.silence_s):
                self._set_state(LinkState.SILENT, f"no data for {self.silence_s:g} s")
        return got_data

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

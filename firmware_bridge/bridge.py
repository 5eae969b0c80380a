"""The agent's side of one field box: keeps the link up, knows the running firmware, and hands
every message to its subscribers.

The port is kept read by the serial drivers' one reopening loop (`drivers.serialport.
ReopeningReader`), which hands the bytes to the link and reopens the port with backoff when it
fails. For each session a watcher thread shakes hands, asks for Hello, and watches the
heartbeat. A port that fails, a box that stops answering or restarts, and a box that speaks
another protocol version are reported as a `BridgeStatus` and retried with backoff: nothing
here raises for a fault of the box or its cable. The driver adapters in `readers.py` turn the
messages into the readings of the station's and warehouse's own interfaces.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from drivers.serialport import PortProtocol, ReopeningReader

from . import messages as m
from .errors import LinkError, LinkTimeout, MessageError, ProtocolVersionError
from .link import DEFAULT_BAUDRATE, PROTOCOL_VERSION, Link, open_port

log = logging.getLogger(__name__)


class BridgeState(enum.Enum):
    CONNECTING = "connecting"      # opening the port, shaking hands
    ONLINE = "online"              # Hello received, heartbeats arriving
    SILENT = "silent"              # linked, but nothing from the box for heartbeat_timeout_s
    LOST = "lost"                  # the port failed or the box does not answer; retrying
    INCOMPATIBLE = "incompatible"  # the box speaks another protocol version; retrying slowly
    CLOSED = "closed"


@dataclass(frozen=True)
class BridgeStatus:
    state: BridgeState
    port: str
    detail: str = ""
    hello: m.Hello | None = None


Item = m.Message | BridgeStatus


class _Waiter:
    def __init__(self, match: Callable[[m.Message], bool]):
        self.match = match
        self.done = threading.Event()
        self.result: m.Message | None = None


class Bridge:
    """One field box on `url` (any pyserial URL)."""

    def __init__(self, url: str, *, baudrate: int = DEFAULT_BAUDRATE, ack_timeout: float = 0.05,
                 heartbeat_timeout_s: float = 3.0, handshake_timeout_s: float = 2.0,
                 backoff_initial: float = 0.2, backoff_max: float = 5.0,
                 port_opener: Callable[..., object] = open_port):
        self.url, self.baudrate, self.ack_timeout = url, baudrate, ack_timeout
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.handshake_timeout_s = handshake_timeout_s
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self._port_opener = port_opener
        self.status = BridgeStatus(BridgeState.CLOSED, url)
        self.hello: m.Hello | None = None
        self.link: Link | None = None
        self.bad_messages = 0
        self._subscribers: list[Callable[[Item], None]] = []
        self._waiters: list[_Waiter] = []
        self._lock = threading.Lock()
        self._hello_wanted = threading.Event()
        self._last_rx = time.monotonic()
        self._users = 0
        self._pinned = False
        self._reader: ReopeningReader | None = None

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> Bridge:
        """Start the connection loop; it runs until `stop`, whatever adapters come and go."""
        self._pinned = True
        return self._start()

    def _start(self) -> Bridge:
        with self._lock:
            if self._reader is None or not self._reader.running:
                self._reader = ReopeningReader(
                    self.url, _BoxSession(self), read_timeout=0.02,
                    settings={"baudrate": self.baudrate}, open_port=self._open,
                    backoff_initial=self.backoff_initial, backoff_max=self.backoff_max,
                    name=f"bridge {self.url}")
                self._reader.start()   # after the assignment: the session asks for it
        return self

    def stop(self) -> None:
        self._pinned = False
        reader = self._reader
        if reader is not None:
            reader.stop()

    def __enter__(self) -> Bridge:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def acquire(self) -> None:
        """A driver adapter starts using the bridge (started at the first user)."""
        with self._lock:
            self._users += 1
        self._start()

    def release(self) -> None:
        """A driver adapter stops using it (stopped after the last user)."""
        with self._lock:
            self._users -= 1
            last = self._users <= 0 and not self._pinned
        if last:
            self.stop()

    def wait_online(self, timeout: float = 5.0) -> m.Hello:
        """The box's Hello once it is online. Raises LinkTimeout (or the version error)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status.state is BridgeState.ONLINE and self.hello is not None:
                return self.hello
            if self.status.state is BridgeState.INCOMPATIBLE:
                raise ProtocolVersionError(self.status.detail)
            time.sleep(0.01)
        if self.status.state is BridgeState.INCOMPATIBLE:
            raise ProtocolVersionError(self.status.detail)
        detail = f": {self.status.detail}" if self.status.detail else ""
        raise LinkTimeout(f"field box on {self.url} is not online after {timeout:g} s "
                          f"({self.status.state.value}{detail})")

    # -- subscribers and requests ----------------------------------------------------------

    def subscribe(self, callback: Callable[[Item], None]) -> Callable[[], None]:
        """Call `callback` with every message and every status change (from the link's
        dispatch thread: return quickly). Returns the function that unsubscribes."""
        with self._lock:
            self._subscribers.append(callback)
        callback(self.status)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)
        return unsubscribe

    def send(self, message: m.Message) -> None:
        """Deliver one message to the box. Raises LinkError when it is not connected."""
        link = self.link
        if link is None:
            raise LinkError(f"field box on {self.url} is not connected "
                            f"({self.status.state.value})")
        link.send(m.encode(message))

    def request(self, message: m.Message, match: Callable[[m.Message], bool],
                timeout: float = 2.0) -> m.Message:
        """Send `message` and return the first message from the box for which `match` is
        true. Raises LinkTimeout, or LinkError when the link fails."""
        waiter = _Waiter(match)
        with self._lock:
            self._waiters.append(waiter)
        try:
            self.send(message)
            if not waiter.done.wait(timeout):
                raise LinkTimeout(f"field box on {self.url} did not answer "
                                  f"{type(message).__name__} within {timeout:g} s")
            return waiter.result
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def expect(self, match: Callable[[m.Message], bool]) -> _Waiter:
        """Register interest in a message before doing what causes it; `.done.wait()` and
        `.result` on the returned object; `forget(waiter)` when no longer wanted."""
        waiter = _Waiter(match)
        with self._lock:
            self._waiters.append(waiter)
        return waiter

    def forget(self, waiter: _Waiter) -> None:
        with self._lock:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def set_output(self, output: int, level: bool, pulse_ms: int = 0,
                   timeout: float = 2.0) -> None:
        """Drive a box output; returns when the box reports the new level."""
        self.request(m.SetOutput(output, level, pulse_ms),
                     lambda x: (isinstance(x, m.OutputState) and x.output == output
                                and x.level == level)
                     or (isinstance(x, m.Error) and x.about == m.SetOutput.TYPE), timeout)

    # -- the connection ---------------------------------------------------------------------

    def _open(self, url: str, *, timeout: float, baudrate: int):
        """The reader's way to open the port: the bridge's opener, whose LinkError (with the
        port's name) the reader treats as a port that cannot be opened yet."""
        try:
            return self._port_opener(url, baudrate)
        except LinkError as exc:
            raise OSError(str(exc)) from None

    def _watch(self, link: Link, reader: ReopeningReader, ended: threading.Event) -> None:
        """One session's watcher: shake hands, then ask for Hello when needed and notice a
        silent box, until the session ends. Runs beside the reader, which delivers the box's
        answers (a send waits for its ACK, so it must not run on the reader's thread)."""
        try:
            link.handshake(self.handshake_timeout_s)
            self._last_rx = time.monotonic()
            self._hello_wanted.set()
            reader.reset_backoff()
            while not ended.is_set():
                if link.failure is not None:
                    raise link.failure
                if self._hello_wanted.is_set():
                    self._hello_wanted.clear()
                    try:
                        link.send(m.encode(m.HelloRequest(PROTOCOL_VERSION)))
                    except LinkTimeout:
                        self._hello_wanted.set()
                silent = time.monotonic() - self._last_rx
                if silent > self.heartbeat_timeout_s and self.status.state is BridgeState.ONLINE:
                    self._set_status(BridgeState.SILENT,
                                     f"nothing from the box for {self.heartbeat_timeout_s:g} s")
                ended.wait(0.02)
        except ProtocolVersionError as exc:
            self._set_status(BridgeState.INCOMPATIBLE, str(exc))
            reader.reopen(later=True)
        except LinkError as exc:
            if not ended.is_set():
                self._set_status(BridgeState.LOST, str(exc))
                reader.reopen()

    def _on_reset(self, peer) -> None:
        if self.hello is not None:
            log.warning("field box on %s restarted (boot id %08x)", self.url, peer.boot_id)
            self._set_status(BridgeState.CONNECTING, "the box restarted")
        self._hello_wanted.set()

    def _on_payload(self, payload: bytes) -> None:
        self._last_rx = time.monotonic()
        try:
            message = m.decode(payload)
        except MessageError as exc:
            self.bad_messages += 1
            log.warning("field box on %s sent a bad message: %s", self.url, exc)
            return
        if isinstance(message, m.Hello):
            self.hello = message
            self._set_status(BridgeState.ONLINE, f"firmware {message.major}.{message.minor}."
                             f"{message.patch}, slot {'AB'[message.active_slot & 1]}")
        elif self.status.state is BridgeState.SILENT and self.hello is not None:
            self._set_status(BridgeState.ONLINE, "the box talks again")
        elif isinstance(message, m.Error):
            log.warning("field box on %s reports error %d about 0x%02x: %s", self.url,
                        message.code, message.about, message.detail)
        with self._lock:
            waiters = [w for w in self._waiters if not w.done.is_set()]
        for waiter in waiters:
            if waiter.match(message):
                waiter.result = message
                waiter.done.set()
        self._publish(message)

    def _set_status(self, state: BridgeState, detail: str = "") -> None:
        if state is self.status.state and detail == self.status.detail:
            return
        self.status = BridgeStatus(state, self.url, detail, self.hello)
        level = logging.INFO if state in (BridgeState.ONLINE, BridgeState.CONNECTING,
                                          BridgeState.CLOSED) else logging.WARNING
        log.log(level, "field box on %s %s%s", self.url, state.value,
                f": {detail}" if detail else "")
        self._publish(self.status)

    def _publish(self, item: Item) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(item)
            except Exception:  # a subscriber's bug must not stop the box
                log.exception("field box on %s: subscriber failed", self.url)


class _BoxSession(PortProtocol):
    """What the bridge's `ReopeningReader` calls for each port it opens: a new `Link` over
    the port, fed by the reader, and a watcher thread for the session."""

    def __init__(self, bridge: Bridge):
        self.bridge = bridge
        self._ended = threading.Event()
        self._watcher: threading.Thread | None = None

    def open_failed(self, exc: Exception) -> None:
        self.bridge._set_status(BridgeState.LOST, str(exc))

    def connection_made(self, port) -> None:
        bridge = self.bridge
        if bridge.status.state not in (BridgeState.LOST, BridgeState.INCOMPATIBLE):
            bridge._set_status(BridgeState.CONNECTING)
        link = Link(port, reads=False, on_message=bridge._on_payload,
                    on_peer_reset=bridge._on_reset, ack_timeout=bridge.ack_timeout,
                    name=f"field box {bridge.url}")
        bridge.link = link.start()   # before the handshake: the box's Hello may follow at once
        self._ended = threading.Event()
        self._watcher = threading.Thread(target=bridge._watch,
                                         args=(link, bridge._reader, self._ended),
                                         daemon=True, name=f"bridge {bridge.url} watch")
        self._watcher.start()

    def data_received(self, data: bytes) -> None:
        link = self.bridge.link
        if link is not None:
            link.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        bridge, link = self.bridge, self.bridge.link
        self._ended.set()
        if link is not None:
            if exc is not None:
                link.port_failed(exc)
                bridge._set_status(BridgeState.LOST, str(link.failure or exc))
            link.detach()
        if self._watcher is not None:
            self._watcher.join(5)
        bridge.link = None

    def finished(self) -> None:
        self.bridge._set_status(BridgeState.CLOSED)

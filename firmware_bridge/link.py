"""Reliable, ordered delivery of messages over one serial port, in both directions.

Stop-and-wait per direction: a DATA frame carries an 8-bit sequence number and is sent again
every `ack_timeout` seconds until the peer's ACK for that number arrives. The receiver
acknowledges every DATA frame it decodes, drops one whose number equals the last it accepted
(a retransmission after a lost ACK), and hands everything else on in order. A frame that fails
its CRC or COBS decoding is dropped unacknowledged, so the sender's retransmission repairs it.

At start, and whenever a side (re)boots, it sends SYNC with its protocol version and a random
boot id until it gets SYNC_ACK. A SYNC with a new boot id means the peer restarted: the
receive state is cleared (its sequence numbers start again) and `on_peer_reset` is called. A
peer with another protocol version is a ProtocolVersionError, never a guess.

The same class runs both ends: the agent's side of a field box and the co-processor simulator.
Callbacks run on one dispatch thread, in order, so a callback may call `send` itself.
"""

from __future__ import annotations

import logging
import os
import queue
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.serialport import PORT_ERRORS, SerialPort, close_quietly
from drivers.serialport import open_port as open_serial

from .errors import FrameError, LinkError, LinkTimeout, ProtocolVersionError
from .frames import Frame, Kind, Splitter, encode_frame

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
DEFAULT_BAUDRATE = 115200
_SYNC = struct.Struct(">BI")  # version, boot id


@dataclass(frozen=True)
class PeerInfo:
    version: int
    boot_id: int


@dataclass
class LinkStats:
    """Counters for diagnostics and tests."""

    sent: int = 0
    retransmits: int = 0
    received: int = 0
    duplicates: int = 0
    bad_frames: int = 0
    peer_resets: int = 0
    errors: list[str] = field(default_factory=list)


def open_port(url: str, baudrate: int = DEFAULT_BAUDRATE) -> SerialPort:
    """Open `url` (a device path, `socket://host:port`, `spy://...`) 8N1 for the link.

    Raises LinkError with the port's name when it cannot be opened."""
    return open_serial(url, error=LinkError, what="co-processor port", baudrate=baudrate,
                       timeout=0.02, write_timeout=2)


def version_mismatch(theirs: int, ours: int) -> ProtocolVersionError:
    return ProtocolVersionError(
        f"the co-processor speaks link protocol version {theirs}, this agent speaks version "
        f"{ours}: install a co-processor firmware for version {ours} (or an agent for "
        f"version {theirs}); the link is not used")


class Link:
    """One end of the link over an open pyserial `port` (see `open_port`)."""

    def __init__(self, port: SerialPort, *, on_message: Callable[[bytes], None],
                 on_peer_reset: Callable[[PeerInfo], None] | None = None,
                 on_fault: Callable[[LinkError], None] | None = None,
                 ack_timeout: float = 0.05, retries: int = 40,
                 version: int = PROTOCOL_VERSION, boot_id: int | None = None,
                 name: str = "link", reads: bool = True):
        """`reads`: the link reads its port in a thread of its own; False when the port's
        reader is someone else's (the bridge's `ReopeningReader`), which hands the bytes to
        `feed` and reports a failed port with `port_failed`."""
        self.port = port
        self.name = name
        self.on_message, self.on_peer_reset, self.on_fault = on_message, on_peer_reset, on_fault
        self.ack_timeout, self.retries = ack_timeout, retries
        self.version = version
        self.boot_id = int.from_bytes(os.urandom(4), "big") if boot_id is None else boot_id
        self.stats = LinkStats()
        self.peer: PeerInfo | None = None
        self._splitter = Splitter()
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._tx_seq = 0
        self._awaiting: int | None = None
        self._acked = False
        self._last_rx: int | None = None
        self._synced = False
        self._failure: LinkError | None = None
        self._closed = threading.Event()
        self._inbox: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read_loop, daemon=True,
                                         name=f"{name} reader") if reads else None
        self._dispatcher = threading.Thread(target=self._dispatch_loop, daemon=True,
                                            name=f"{name} dispatch")

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> Link:
        if self._dispatcher.ident is None:
            if self._reader is not None:
                self._reader.start()
            self._dispatcher.start()
        return self

    def handshake(self, timeout: float = 2.0) -> PeerInfo:
        """Announce ourselves (SYNC) until the peer answers; return its version and boot id.

        Raises ProtocolVersionError for another version, LinkTimeout without an answer."""
        self.start()
        sync = encode_frame(Frame(Kind.SYNC, 0, _SYNC.pack(self.version, self.boot_id)))
        deadline = time.monotonic() + timeout
        with self._cond:
            self._synced = False
        while True:
            self._write(sync)
            with self._cond:
                self._cond.wait_for(lambda: self._synced or self._failure is not None,
                                    min(self.ack_timeout * 4, max(0.0, deadline
                                                                  - time.monotonic())))
                if self._failure is not None:
                    raise self._failure
                if self._synced:
                    return self.peer
            if time.monotonic() >= deadline:
                raise LinkTimeout(f"{self.name}: no answer to the link handshake within "
                                  f"{timeout:g} s; check the co-processor's power, its cable "
                                  "and the port's baud rate")

    def close(self) -> None:
        """Stop the threads and close the port. Pending sends fail with LinkError."""
        self.detach(cancel=True)
        close_quietly(self.port)

    def detach(self, cancel: bool = False) -> None:
        """Stop the threads but leave the port open (the simulator's reboot: the same wire,
        a new link). Pending sends fail with LinkError."""
        self._closed.set()
        self._fail(LinkError(f"{self.name}: link closed"), report=False)
        if cancel and hasattr(self.port, "cancel_read"):
            try:
                self.port.cancel_read()
            except PORT_ERRORS:
                pass
        self._inbox.put(None)
        for thread in (self._reader, self._dispatcher):
            if thread is not None and thread.ident is not None \
                    and thread is not threading.current_thread():
                thread.join(2)

    def __enter__(self) -> Link:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def failure(self) -> LinkError | None:
        return self._failure

    # -- sending ---------------------------------------------------------------------------

    def send(self, payload: bytes) -> None:
        """Deliver `payload` to the peer exactly once, in order with earlier sends; block
        until it is acknowledged. Raises LinkTimeout after `retries` retransmissions, or the
        link's failure (port lost, protocol version)."""
        with self._send_lock:
            with self._cond:
                if self._failure is not None:
                    raise self._failure
                self._tx_seq = (self._tx_seq + 1) & 0xFF
                seq = self._tx_seq
                self._awaiting, self._acked = seq, False
            wire = encode_frame(Frame(Kind.DATA, seq, payload))
            self.stats.sent += 1
            try:
                for attempt in range(self.retries + 1):
                    if attempt:
                        self.stats.retransmits += 1
                    self._write(wire)
                    with self._cond:
                        self._cond.wait_for(lambda: self._acked or self._failure is not None,
                                            self.ack_timeout)
                        if self._acked:
                            return
                        if self._failure is not None:
                            raise self._failure
            finally:
                with self._cond:
                    self._awaiting = None
            raise LinkTimeout(f"{self.name}: no acknowledgement after {self.retries + 1} "
                              "transmissions; the co-processor is not answering")

    def _write(self, data: bytes) -> None:
        with self._write_lock:
            try:
                self.port.write(data)
                self.port.flush()
            except (*PORT_ERRORS, TypeError) as exc:
                # TypeError: pyserial's port was closed by another thread mid-write (its fd is
                # None by then); that is a closed link, not a crash of the bridge's thread.
                error = LinkError(f"{self.name}: writing to the port failed: {exc}")
                self._fail(error)
                raise error from None

    # -- receiving -------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes read from the port, in order (frames may be cut anywhere)."""
        for item in self._splitter.feed(data):
            self._handle(item)

    def port_failed(self, exc: Exception) -> None:
        """The port failed under the reader: pending and later sends fail with LinkError."""
        if not self._closed.is_set():
            self._fail(LinkError(f"{self.name}: the port failed: {exc}"))

    def _read_loop(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.port.read(self.port.in_waiting or 1)
            except (*PORT_ERRORS, TypeError, AttributeError) as exc:
                # pyserial raises TypeError/AttributeError when the port is closed under it
                self.port_failed(exc)
                return
            if data:
                self.feed(data)

    def _handle(self, item: Frame | FrameError) -> None:
        if isinstance(item, FrameError):
            self.stats.bad_frames += 1
            log.debug("%s: dropped a frame: %s", self.name, item)
            return
        try:
            if item.kind is Kind.DATA:
                self._on_data(item)
            elif item.kind is Kind.ACK:
                with self._cond:
                    if self._awaiting == item.seq:
                        self._acked = True
                        self._cond.notify_all()
            elif item.kind is Kind.SYNC:
                self._on_sync(item)
            elif item.kind is Kind.SYNC_ACK:
                self._on_sync_ack(item)
        except LinkError:
            pass  # the port failed while answering; _fail has recorded it

    def _on_data(self, frame: Frame) -> None:
        self._write(encode_frame(Frame(Kind.ACK, frame.seq)))
        if frame.seq == self._last_rx:
            self.stats.duplicates += 1
            return
        self._last_rx = frame.seq
        self.stats.received += 1
        self._inbox.put(("message", frame.payload))

    def _peer_info(self, frame: Frame) -> PeerInfo | None:
        if len(frame.payload) != _SYNC.size:
            self.stats.bad_frames += 1
            return None
        version, boot_id = _SYNC.unpack(frame.payload)
        if version != self.version:
            self._fail(version_mismatch(version, self.version))
            return None
        return PeerInfo(version, boot_id)

    def _on_sync(self, frame: Frame) -> None:
        self._write(encode_frame(Frame(Kind.SYNC_ACK, 0,
                                       _SYNC.pack(self.version, self.boot_id))))
        peer = self._peer_info(frame)
        if peer is None or peer == self.peer:
            return  # a repeated SYNC: our SYNC_ACK was lost
        known = self.peer is not None
        self.peer, self._last_rx = peer, None
        if known:
            self.stats.peer_resets += 1
            log.info("%s: the peer restarted (boot id %08x)", self.name, peer.boot_id)
        self._inbox.put(("reset", peer))

    def _on_sync_ack(self, frame: Frame) -> None:
        peer = self._peer_info(frame)
        if peer is None:
            return
        with self._cond:
            if self.peer is not None and peer != self.peer:
                self._last_rx = None
            self.peer = peer
            self._synced = True
            self._cond.notify_all()

    def _dispatch_loop(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            what, value = item
            try:
                if what == "message":
                    self.on_message(value)
                elif self.on_peer_reset is not None:
                    self.on_peer_reset(value)
            except Exception:  # the owner's callback must not end the link
                log.exception("%s: %s callback failed", self.name, what)

    def _fail(self, error: LinkError, report: bool = True) -> None:
        with self._cond:
            if self._failure is not None:
                return
            self._failure = error
            self._cond.notify_all()
        if report:
            self.stats.errors.append(str(error))
            log.warning("%s", error)
            if self.on_fault is not None:
                try:
                    self.on_fault(error)
                except Exception:
                    log.exception("%s: fault callback failed", self.name)

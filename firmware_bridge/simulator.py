"""The field box's co-processor in Python, on a serial port: for tests, demos and technicians
without a box.

It speaks the real protocol through the same `Link` as the agent, over one end of a socat pty
pair (or any pyserial URL), and behaves as the firmware is specified to: a SYNC and a Hello at
every boot, a heartbeat every second, weight and climate samples every `period_s`, tag reads
and input edges when told, outputs that answer and pulse, and the update protocol with two
slots in a flash that survives resets. Faults are injected on request: lost, corrupted and
noisy frames and slow answers (`Faults`), a reset at any moment or after N update chunks, a
wrong protocol version, and a new image that does not boot.

    with Coprocessor("/dev/pts/7", firmware="1.0.0") as box:
        box.set_weight(15230, stable=True)
        box.tag_seen("e2801160...", rssi=-55)
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

from agent.contract.errors import SignatureError
from agent.contract.signing import ED25519, Verifier

from . import messages as m
from .errors import LinkError, MessageError
from .faults import Faults, FaultyPort
from .frames import crc16
from .image import Version, signed_header
from .link import PROTOCOL_VERSION, Link, open_port

log = logging.getLogger(__name__)

HARDWARE = 0x0C01
ZERO_SHA = bytes(32)


@dataclass
class Slot:
    version: Version | None = None
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Flash:
    """What survives a reset: both slots, which one boots, and the transfer in progress."""

    slots: list[Slot]
    active: int = 0
    trial: int | None = None          # slot to boot on trial at the next boot
    unconfirmed: bool = False         # running a trial image not yet confirmed
    boot_status: int = m.BootStatus.NORMAL
    rx_sha: bytes = ZERO_SHA          # the image being received into the inactive slot
    rx_length: int = 0
    rx_version: Version | None = None
    rx_signature: bytes = bytes(64)
    rx_state: int = m.UpdateState.IDLE

    @property
    def inactive(self) -> int:
        return 1 - self.active

    @property
    def running(self) -> Version:
        return self.slots[self.active].version


class Coprocessor:
    """The simulated box on `port` (a URL/path, or an open pyserial port)."""

    def __init__(self, port, *, firmware: str = "1.0.0", hardware: int = HARDWARE,
                 protocol: int = PROTOCOL_VERSION, vendor: Verifier | None = None,
                 faults: Faults | None = None, period_s: float = 0.2,
                 heartbeat_s: float = 1.0, outputs: int = 4, watchdog_s: float = 0.3,
                 ack_timeout: float = 0.05):
        raw = open_port(port) if isinstance(port, str) else port
        self.port = FaultyPort(raw, faults)
        self.faults = self.port.faults
        self.hardware, self.protocol, self.vendor = hardware, protocol, vendor
        self.period_s, self.heartbeat_s, self.watchdog_s = period_s, heartbeat_s, watchdog_s
        self.ack_timeout = ack_timeout
        self.flash = Flash([Slot(Version.parse(firmware)), Slot()])
        self.outputs = [False] * outputs
        self.weight: tuple[int, bool, bool, bool] | None = (0, True, False, False)
        self.climate: tuple[int, int, bool] | None = (2150, 6500, True)
        # faults of the box itself
        self.reset_after_chunks: int | None = None  # reset (once) after writing that many chunks
        self.fail_next_boot = False                 # the next trial image does not come up
        self.boots = 0
        self.chunks_written = 0
        self.received: list[m.Message] = []         # everything the agent sent, for tests
        self.link: Link | None = None
        self._out: queue.Queue = queue.Queue(maxsize=200)
        self._stop = threading.Event()
        self._booted = threading.Event()
        self._lock = threading.RLock()
        self._started = time.monotonic()
        self._threads: list[threading.Thread] = []

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> Coprocessor:
        for target, name in ((self._boot, "boot"), (self._sender, "sender"),
                             (self._sampler, "sampler")):
            thread = threading.Thread(target=target, daemon=True, name=f"coprocessor {name}")
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            link, self.link = self.link, None
        if link is not None:
            link.detach()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(3)
        self.port.close()

    def __enter__(self) -> Coprocessor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self, half_frame: bool = True) -> None:
        """Power-cycle the box: RAM (the link, queued messages) is lost, flash is kept; a
        frame cut in the middle is left on the line, as a real reset would."""
        with self._lock:
            self._booted.clear()
            link, self.link = self.link, None
        if link is not None:
            link.detach()
        while not self._out.empty():
            self._out.get_nowait()
        if half_frame:
            self.port.write_raw(b"\x05\x11\x00\x00")  # the start of a WeightSample, cut off
        if not self._stop.is_set():
            threading.Thread(target=self._boot, daemon=True, name="coprocessor boot").start()

    def wait_booted(self, timeout: float = 5.0) -> bool:
        return self._booted.wait(timeout)

    @property
    def running_version(self) -> Version:
        return self.flash.running

    # -- the inputs of the simulated box ---------------------------------------------------

    def set_weight(self, grams: int | None, stable: bool = True, overload: bool = False,
                   underload: bool = False) -> None:
        """The load cell's weight from now on; None stops the samples (the ADC is silent)."""
        self.weight = None if grams is None else (grams, stable, overload, underload)

    def set_climate(self, temp_c100: int | None, rh_c100: int = 0) -> None:
        """Temperature and humidity from now on; None makes the sensor fail."""
        self.climate = (0, 0, False) if temp_c100 is None else (temp_c100, rh_c100, True)

    def tag_seen(self, epc: str, rssi: int = -60, antenna: int = 1) -> None:
        self.emit(m.TagSeen(antenna, rssi, bytes.fromhex(epc)))

    def input_edge(self, number: int, level: bool) -> None:
        self.emit(m.InputEdge(number, level, self._uptime_ms()))

    def emit(self, message: m.Message) -> None:
        """Queue a message to the agent (dropped while the queue is full: no agent)."""
        try:
            self._out.put_nowait(message)
        except queue.Full:
            pass

    # -- threads ---------------------------------------------------------------------------

    def _boot(self) -> None:
        flash = self.flash
        crashed = False
        with self._lock:
            if flash.unconfirmed:  # reset while on trial: the bootloader goes back
                flash.active, flash.unconfirmed = flash.inactive, False
                flash.boot_status = m.BootStatus.ROLLED_BACK
            elif flash.trial is not None:
                slot, flash.trial = flash.trial, None
                if self.fail_next_boot:
                    self.fail_next_boot = False
                    crashed = True
                else:
                    flash.active, flash.unconfirmed = slot, True
                    flash.boot_status = m.BootStatus.TRIAL
        if crashed:  # the new image hangs; the watchdog resets into the old slot
            if self._stop.wait(self.watchdog_s):
                return
            flash.boot_status = m.BootStatus.ROLLED_BACK
        self.boots += 1
        self._started = time.monotonic()
        link = Link(self.port, on_message=self._on_message, on_peer_reset=self._on_agent,
                    version=self.protocol, ack_timeout=self.ack_timeout, name="coprocessor")
        with self._lock:
            if self._stop.is_set():
                return
            self.link = link
        link.start()
        while not self._stop.is_set() and self.link is link:
            try:
                link.handshake(timeout=1.0)
                break
            except LinkError:
                if link.failure is not None:
                    return  # wrong version (the agent said so) or detached
        self._booted.set()
        self.emit(self._hello())

    def _sender(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._out.get(timeout=0.05)
            except queue.Empty:
                continue
            link = self.link
            if link is None or link.peer is None:
                continue
            try:
                link.send(m.encode(message))
            except LinkError:
                pass  # no agent listening, or a reset: the message is lost, as on a real box

    def _sampler(self) -> None:
        next_beat = time.monotonic()
        while not self._stop.wait(self.period_s):
            if not self._booted.is_set():
                continue
            if self.weight is not None:
                self.emit(m.WeightSample(0, *self.weight))
            if self.climate is not None:
                self.emit(m.ClimateSample(0, *self.climate))
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.heartbeat_s
                self.emit(m.Heartbeat(self._uptime_ms()))

    def _uptime_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000) & 0xFFFFFFFF

    # -- answering the agent ---------------------------------------------------------------

    def _on_agent(self, _peer) -> None:
        """An agent (re)connected: tell it who we are."""
        if self._booted.is_set():
            self.emit(self._hello())

    def _hello(self) -> m.Hello:
        v = self.flash.running
        return m.Hello(self.protocol, v.major, v.minor, v.patch, self.flash.active,
                       self.flash.boot_status, self.hardware)

    def _on_message(self, payload: bytes) -> None:
        try:
            message = m.decode(payload)
        except MessageError as exc:
            unknown = "unknown message type" in str(exc)
            self.emit(m.Error(m.ErrorCode.UNKNOWN_TYPE if unknown else m.ErrorCode.BAD_MESSAGE,
                              payload[0] if payload else 0, str(exc)[:200]))
            return
        self.received.append(message)
        handler = getattr(self, f"_on_{type(message).__name__}", None)
        if handler is not None:
            handler(message)

    def _on_HelloRequest(self, _msg: m.HelloRequest) -> None:
        self.emit(self._hello())

    def _on_SetOutput(self, msg: m.SetOutput) -> None:
        if msg.output >= len(self.outputs):
            self.emit(m.Error(m.ErrorCode.BAD_OUTPUT, msg.TYPE,
                              f"output {msg.output} does not exist (0-{len(self.outputs) - 1})"))
            return
        self.outputs[msg.output] = msg.level
        self.emit(m.OutputState(msg.output, msg.level))
        if msg.pulse_ms:
            def back():
                self.outputs[msg.output] = not msg.level
                self.emit(m.OutputState(msg.output, not msg.level))
            timer = threading.Timer(msg.pulse_ms / 1000, back)
            timer.daemon = True
            timer.start()

    def _status(self) -> m.UpdateStatus:
        f = self.flash
        offset = len(f.slots[f.inactive].data) if f.rx_state != m.UpdateState.IDLE else 0
        return m.UpdateStatus(f.rx_state, f.inactive, offset, f.rx_sha)

    def _on_UpdateQuery(self, _msg) -> None:
        self.emit(self._status())

    def _on_UpdateBegin(self, msg: m.UpdateBegin) -> None:
        f = self.flash
        version = Version(msg.major, msg.minor, msg.patch)
        if self.vendor is not None:
            header = signed_header(self.hardware, version, msg.length, msg.sha256)
            try:
                self.vendor.verify(ED25519, self.vendor.kid, header, msg.signature)
            except SignatureError:
                self.emit(m.Error(m.ErrorCode.UPDATE_REFUSED, msg.TYPE,
                                  "image signature does not verify with the vendor key"))
                self.emit(m.UpdateStatus(m.UpdateState.FAILED, f.inactive, 0, msg.sha256))
                return
        with self._lock:
            same = (f.rx_sha == msg.sha256 and f.rx_state in (m.UpdateState.RECEIVING,
                                                             m.UpdateState.COMPLETE))
            if not same:
                f.slots[f.inactive] = Slot()
                f.rx_sha, f.rx_length, f.rx_version = msg.sha256, msg.length, version
                f.rx_signature, f.rx_state = msg.signature, m.UpdateState.RECEIVING
        self.emit(self._status())

    def _on_UpdateChunk(self, msg: m.UpdateChunk) -> None:
        f = self.flash
        slot = f.slots[f.inactive]
        if f.rx_state != m.UpdateState.RECEIVING:
            self.emit(m.UpdateChunkAck(len(slot.data), m.ChunkStatus.NO_UPDATE))
            return
        if crc16(msg.data) != msg.crc:
            self.emit(m.UpdateChunkAck(len(slot.data), m.ChunkStatus.BAD_CRC))
            return
        if msg.offset != len(slot.data) or len(slot.data) + len(msg.data) > f.rx_length:
            self.emit(m.UpdateChunkAck(len(slot.data), m.ChunkStatus.WRONG_OFFSET))
            return
        slot.data += msg.data
        self.chunks_written += 1
        if self.reset_after_chunks is not None and self.chunks_written >= self.reset_after_chunks:
            self.reset_after_chunks = None
            threading.Thread(target=self.reset, daemon=True, name="coprocessor reset").start()
            return  # the box dies before it can answer
        self.emit(m.UpdateChunkAck(len(slot.data), m.ChunkStatus.OK))
        if len(slot.data) == f.rx_length:
            if hashlib.sha256(slot.data).digest() == f.rx_sha:
                f.rx_state = m.UpdateState.COMPLETE
                slot.version = f.rx_version
            else:
                f.rx_state = m.UpdateState.FAILED
                f.slots[f.inactive] = Slot()
            self.emit(self._status())

    def _on_UpdateCommit(self, msg: m.UpdateCommit) -> None:
        f = self.flash
        if f.rx_state != m.UpdateState.COMPLETE or msg.sha256 != f.rx_sha:
            self.emit(m.Error(m.ErrorCode.UPDATE_REFUSED, msg.TYPE,
                              "no complete image with this SHA-256 to commit"))
            self.emit(self._status())
            return
        self.emit(self._status())
        with self._lock:
            f.trial = f.inactive
            f.rx_state, f.rx_sha = m.UpdateState.IDLE, ZERO_SHA

        def reboot():
            self._drain(1.0)
            self.reset(half_frame=False)
        threading.Thread(target=reboot, daemon=True, name="coprocessor reboot").start()

    def _on_UpdateConfirm(self, msg: m.UpdateConfirm) -> None:
        f = self.flash
        if f.unconfirmed and f.running == Version(msg.major, msg.minor, msg.patch):
            f.unconfirmed, f.boot_status = False, m.BootStatus.NORMAL
        self.emit(self._hello())

    def _drain(self, timeout: float) -> None:
        """Wait (bounded) until queued answers went out, as firmware finishes its UART TX."""
        deadline = time.monotonic() + timeout
        while not self._out.empty() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)

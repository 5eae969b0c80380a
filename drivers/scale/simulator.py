"""Simulated indicators that write real frames on a serial port, for tests, demos and bench
checks of the whole path (pty or null-modem cable, pyserial, reader, parser).

One `Simulator` plays one indicator of one protocol on a pyserial URL, typically the far end
of a socat pty pair. Continuous protocols write a frame every 1/rate_hz seconds; MT-SICS answers
commands (and streams after SIR); XK3190-A9 in command mode answers A/B/C/D, with the tare taken
by `take_tare`. Faults on demand: noise and motion while settling (`set_target`), overload,
garbage bytes (`inject`), silence (`pause`), and switching off (`stop`, which closes the
port). Unplugging the adapter is the pty fixture's job (it kills socat).
"""

from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal

from drivers.serialport import PORT_ERRORS, SerialPort, close_quietly, open_port

from . import ad_ascii, mtsics, toledo, xk3190_a9, xk3190_a12
from .errors import PortError
from .framing import StxEtxFramer
from .reading import Unit
from .sim_model import Display, WeightModel

log = logging.getLogger(__name__)
PROTOCOLS = (xk3190_a9.NAME, xk3190_a12.NAME, toledo.NAME, mtsics.NAME, ad_ascii.NAME)


class Simulator:
    """Plays an indicator speaking `protocol` (a bare name, see PROTOCOLS) on `url`.

    The port is opened by `start()`, in the caller's thread, so a wrong path fails at once
    (PortError). `sics_tare` False plays an MT-SICS balance without the tare commands (T, TA,
    TAC answer ES); `unzeroed` an indicator just switched on that reports it has not been
    zeroed (Toledo's power-up bit) until `zero()`.
    `error` holds what ended the thread early (the port vanished), else None.
    """

    def __init__(self, url: str, protocol: str, model: WeightModel | None = None, *,
                 rate_hz: float = 20.0, baudrate: int = 9600, serial_number: str = "SIM0001",
                 power_up: bool = True, mode: str = "continuous", address: str = "A",
                 checksum: bool = True, s_timeout_s: float = 1.0, sics_tare: bool = True,
                 unzeroed: bool = False):
        if protocol not in PROTOCOLS:
            raise ValueError(f"no simulator for {protocol!r}; have {', '.join(PROTOCOLS)}")
        self.url, self.protocol = url, protocol
        self.model = model or WeightModel()
        self.period = 1.0 / rate_hz
        self.baudrate, self.serial_number, self.power_up = baudrate, serial_number, power_up
        self.mode, self.address, self.checksum = mode, address, checksum
        self.s_timeout_s = s_timeout_s
        self.sics_tare, self.unzeroed = sics_tare, unzeroed
        self.frames_sent = 0
        self.commands: list[bytes] = []
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._garbage: list[bytes] = []
        self._streaming = protocol != mtsics.NAME and mode == "continuous"
        self._inbuf = bytearray()
        self._a9_framer = StxEtxFramer((xk3190_a9.HANDSHAKE_LEN,))
        self._port: SerialPort | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"scale-sim {protocol}")

    # -- control from the test ---------------------------------------------------------------

    def start(self) -> Simulator:
        """Open the port and start playing; calling it again does nothing."""
        if self._port is not None:
            return self
        self._port = open_port(self.url, error=PortError, what="simulator port",
                               baudrate=self.baudrate, timeout=min(0.02, self.period))
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Switch the indicator off: stop writing and close the port."""
        self._stop.set()
        self._thread.join(timeout)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def set_target(self, weight: Decimal | str | int) -> None:
        """Put a load on the platform; the display settles to it (see WeightModel)."""
        with self._lock:
            self.model.set_target(Decimal(weight), time.monotonic())

    def take_tare(self) -> bool:
        """The tare key: the load now on the platform (once stable) becomes the tare, and
        the display shows net. Returns whether it was taken."""
        with self._lock:
            return self.model.take_tare(time.monotonic())

    def zero(self) -> bool:
        """The zero key: what is on the platform now (once stable) becomes zero."""
        with self._lock:
            done = self.model.zero(time.monotonic())
        if done:
            self.unzeroed = False
        return done

    def clear_tare(self) -> None:
        with self._lock:
            self.model.tare = Decimal(0)

    def overload(self, on: bool = True) -> None:
        with self._lock:
            self.model.force_overload = on

    def underload(self, on: bool = True) -> None:
        with self._lock:
            self.model.force_underload = on

    def inject(self, data: bytes) -> None:
        """Write `data` as is before the next frame (line noise, a partial frame)."""
        with self._lock:
            self._garbage.append(bytes(data))

    def pause(self) -> None:
        """Stop writing frames and answering commands (what arrives meanwhile is lost), port
        left open (indicator hung, cable cut at its end)."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def display(self) -> Display:
        with self._lock:
            return self.model.display(time.monotonic())

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        port = self._port
        try:
            if self.protocol == mtsics.NAME and self.power_up:
                self._write(mtsics.encode_reply("I4", "A", self.serial_number))
            due = time.monotonic()
            while not self._stop.is_set():
                data = port.read(port.in_waiting or 1)
                if data and not self._paused.is_set():
                    self._received(data)
                with self._lock:
                    garbage, self._garbage = self._garbage, []
                for chunk in garbage:
                    self._write(chunk)
                now = time.monotonic()
                if now >= due:
                    due = max(due + self.period, now)
                    if self._streaming and not self._paused.is_set():
                        self._write(self._frame(self.display()))
                        self.frames_sent += 1
        except PORT_ERRORS as exc:
            self.error = exc
            log.info("scale simulator on %s ended: %s", self.url, exc)
        finally:
            close_quietly(port)

    def _write(self, data: bytes) -> None:
        self._port.write(data)

    def _frame(self, d: Display) -> bytes:
        """One continuous frame (or one SIR line) showing `d`."""
        m = self.model
        if self.protocol == xk3190_a9.NAME:
            # The A9 frame has no overload flag: the value is sent as it is, clipped to six
            # digits. *Unconfirmed* what a real A9 sends when overloaded.
            limit = Decimal(999999).scaleb(-m.decimals)
            return xk3190_a9.encode(max(min(d.weight, limit), -limit), m.decimals)
        if self.protocol == xk3190_a12.NAME:
            condition = "OL" if d.overload else "LO" if d.underload else ""
            return xk3190_a12.encode(d.weight, m.decimals, condition=condition)
        if self.protocol == toledo.NAME:
            return toledo.encode(d.weight, m.decimals, tare=d.tare, unit=Unit(m.unit),
                                 net=bool(d.tare), motion=not d.stable,
                                 out_of_range=d.overload or d.underload, checksum=self.checksum,
                                 power_up=self.unzeroed)
        if self.protocol == ad_ascii.NAME:
            return ad_ascii.encode(None if d.overload else d.weight, m.unit, stable=d.stable,
                                   kind="NT" if d.tare else "GS", decimals=m.decimals)
        return self._sics_weight(d)

    def _sics_weight(self, d: Display) -> bytes:
        if d.overload or d.underload:
            return mtsics.encode_reply("S", "+" if d.overload else "-")
        return mtsics.encode_weight(d.weight, self.model.unit, stable=d.stable)

    # -- answering commands -------------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        if self.protocol == mtsics.NAME:
            self._inbuf += data
            while (end := self._inbuf.find(b"\r\n")) >= 0:
                line = bytes(self._inbuf[:end])
                del self._inbuf[:end + 2]
                self.commands.append(line)
                self._answer_sics(line.decode("latin-1").strip())
        elif self.protocol == xk3190_a9.NAME and self.mode == "command":
            for frame in self._a9_framer.feed(data):
                if isinstance(frame, bytes):
                    self.commands.append(frame)
                    self._answer_a9(frame)

    def _answer_sics(self, line: str) -> None:
        word = line.split(" ", 1)[0]
        if word != "SIR":
            self._streaming = False
        if word == "S":
            deadline = time.monotonic() + self.s_timeout_s
            d = self.display()
            while not d.stable and not d.overload and time.monotonic() < deadline:
                self._stop.wait(self.period)
                d = self.display()
            if d.overload or d.underload or d.stable:
                self._write(self._sics_weight(d))
            else:
                self._write(mtsics.encode_reply("S", "I"))
        elif word in ("SI", "SIR"):
            self._write(self._sics_weight(self.display()))
            self._streaming = word == "SIR"
        elif word == "Z":
            d = self.display()
            if d.overload or d.underload:
                self._write(mtsics.encode_reply("Z", "+" if d.overload else "-"))
            else:
                with self._lock:
                    done = self.model.zero(time.monotonic())
                self._write(mtsics.encode_reply("Z", "A" if done else "I"))
        elif word == "TA" and self.sics_tare:
            self._write(mtsics.encode_weight(self._shown(self.display().tare), self.model.unit,
                                             stable=True, ident="TA"))
        elif word == "T" and self.sics_tare:
            with self._lock:
                done = self.model.take_tare(time.monotonic())
            self._write(mtsics.encode_weight(self._shown(self.display().tare), self.model.unit,
                                             stable=True, ident="T") if done else
                        mtsics.encode_reply("T", "I"))
        elif word == "TAC" and self.sics_tare:
            with self._lock:
                self.model.tare = Decimal(0)
            self._write(mtsics.encode_reply("TAC", "A"))
        elif word in ("@", "I4"):
            self._write(mtsics.encode_reply("I4", "A", self.serial_number))
        else:
            self._write(mtsics.encode_reply("ES"))

    def _shown(self, value: Decimal) -> Decimal:
        """`value` with the display's decimals, as the balance prints it."""
        return value.quantize(Decimal(1).scaleb(-self.model.decimals))

    def _answer_a9(self, frame: bytes) -> None:
        address, command = chr(frame[1]), chr(frame[2])
        if (address != self.address or command not in xk3190_a9.COMMANDS
                or xk3190_a9.command(command, address).data != frame):
            return  # another indicator's address, or a corrupted command: a bus stays silent
        d = self.display()
        if command == "A":
            self._write(xk3190_a9.encode_answer(address, "A", None, 0))
            return
        value = {"B": d.weight + d.tare, "C": d.tare, "D": d.weight}[command]
        self._write(xk3190_a9.encode_answer(address, command, value, self.model.decimals))

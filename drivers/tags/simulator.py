"""A simulated "BB ... 7E" UHF module that writes real frames on a serial port, for tests,
demos and technicians (the far end of a socat pty pair, or a null-modem cable).

It behaves as the module does towards the agent: quiet until it receives multi-poll, then one
inventory round every 1/rounds_per_s seconds (a notice per tag read, nothing for an empty round)
until the poll count runs out or stop arrives; a single inventory answers one round, or the
"no tag" error frame; a command it does not know gets error 17. The reads come from a
`TagField` (missed reads, RSSI noise, cross-reads, tags that come and go). Faults on demand:
garbage bytes and cut frames (`inject`, `garbage_rate`), a module that stops answering
(`hang`). Unplugging the adapter is the pty pair's job.

    python -m drivers.tags.simulator PORT [--tags 40] [--antennas 4] [--rate 20]
"""

from __future__ import annotations

import argparse
import logging
import threading
import time

from drivers.serialport import PORT_ERRORS, SerialPort, close_quietly, open_port

from . import bb7e
from .bb7e_framing import COMMAND, RESPONSE, Frame, Framer
from .errors import FrameError, PortError
from .sim_field import TagField

log = logging.getLogger(__name__)


class BB7ESimulator:
    """Plays one module on `url`. `antenna_byte`: append the antenna number to notices (a
    multi-port module); without it the field's antennas are not told apart, as on a
    single-port module. The port is opened by `start()`, in the caller's thread (PortError if
    it cannot be)."""

    def __init__(self, url: str, field: TagField | None = None, *, rounds_per_s: float = 20.0,
                 antenna_byte: bool = True, garbage_rate: float = 0.0,
                 baudrate: int = bb7e.BAUDRATE):
        self.url = url
        self.field = field or TagField()
        self.period = 1.0 / rounds_per_s
        self.antenna_byte, self.garbage_rate, self.baudrate = antenna_byte, garbage_rate, baudrate
        self.commands: list[bytes] = []      # every command frame received, in order
        self.reads_sent = 0
        self.rounds = 0
        self.error: BaseException | None = None
        self._polls_left = 0
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        self._stop = threading.Event()
        self._hung = threading.Event()
        self._port: SerialPort | None = None
        self._framer = Framer()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"bb7e-sim {url}")

    # -- control ----------------------------------------------------------------------------------

    def start(self) -> BB7ESimulator:
        if self._port is None:
            self._port = open_port(self.url, error=PortError, what="simulator port",
                                   baudrate=self.baudrate, timeout=0.005)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Switch the module off: stop writing and close the port."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> BB7ESimulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def inject(self, data: bytes) -> None:
        """Write `data` as is before the next frame (line noise, a cut frame)."""
        with self._lock:
            self._pending.append(bytes(data))

    def hang(self) -> None:
        """Stop answering anything, port left open (a module that locked up)."""
        self._hung.set()

    def resume(self) -> None:
        self._hung.clear()

    @property
    def polling(self) -> bool:
        return self._polls_left > 0

    # -- the thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        port = self._port
        due = time.monotonic()
        try:
            while not self._stop.is_set():
                data = port.read(port.in_waiting or 1)
                hung = self._hung.is_set()
                if data:
                    for item in self._framer.feed(data):
                        if isinstance(item, Frame) and not hung:
                            self._command(item)
                        elif isinstance(item, FrameError):
                            log.info("bb7e simulator: %s", item)
                with self._lock:
                    pending, self._pending = self._pending, []
                if pending and not hung:
                    self._write(b"".join(pending))
                now = time.monotonic()
                if now >= due:
                    due = max(due + self.period, now)
                    if self._polls_left and not hung:
                        self._polls_left -= 1
                        self._write(self._round(no_tag_frame=False))
        except PORT_ERRORS as exc:
            self.error = exc
            log.info("bb7e simulator on %s ended: %s", self.url, exc)
        finally:
            close_quietly(port)

    def _command(self, frame: Frame) -> None:
        self.commands.append(frame.raw)
        if frame.type != COMMAND:
            return
        if frame.command == bb7e.MULTI_POLL and len(frame.params) == 3:
            self._polls_left = frame.params[1] << 8 | frame.params[2]
        elif frame.command == bb7e.STOP:
            self._polls_left = 0
            self._write(bb7e.build(bb7e.STOP, b"\x00", RESPONSE))
        elif frame.command == bb7e.INVENTORY:
            self._write(self._round(no_tag_frame=True))
        else:
            self._write(bb7e.encode_error(0x17))

    def _round(self, *, no_tag_frame: bool) -> bytes:
        sightings = self.field.round()
        self.rounds += 1
        rng = self.field.rng
        out = bytearray()
        for s in sightings:
            if self.garbage_rate and rng.random() < self.garbage_rate:
                noise = rng.randbytes(rng.randint(1, 8))
                # Half the time a notice cut short by noise, else bytes between frames.
                if rng.random() < 0.5:
                    cut = bb7e.encode_notice(s.epc, s.rssi)
                    noise = cut[:rng.randint(2, len(cut) - 2)] + noise
                out += noise
            out += bb7e.encode_notice(s.epc, s.rssi, s.antenna if self.antenna_byte else None)
        self.reads_sent += len(sightings)
        if not sightings and no_tag_frame:
            out += bb7e.encode_error(bb7e.NO_TAG)
        return bytes(out)

    def _write(self, data: bytes) -> None:
        if data:
            self._port.write(data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Play a BB ... 7E UHF module on a serial "
                                     "port (e.g. one end of a socat pty pair).")
    parser.add_argument("port", help="pyserial URL or device path")
    parser.add_argument("--tags", type=int, default=40)
    parser.add_argument("--antennas", type=int, default=4)
    parser.add_argument("--rate", type=float, default=20.0, help="inventory rounds per second")
    parser.add_argument("--miss", type=float, default=0.2, help="share of missed reads")
    parser.add_argument("--churn", type=float, default=0.0,
                        help="chance per round that one tag leaves and another arrives")
    parser.add_argument("--garbage", type=float, default=0.0,
                        help="chance per notice of noise before it")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    field = TagField(args.antennas, seed=args.seed, miss_rate=args.miss, churn_rate=args.churn)
    field.populate(args.tags)
    sim = BB7ESimulator(args.port, field, rounds_per_s=args.rate, garbage_rate=args.garbage)
    with sim:
        try:
            while sim._thread.is_alive():
                sim._thread.join(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

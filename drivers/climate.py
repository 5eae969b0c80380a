"""Temperature and relative humidity from a Sensirion SHT3x on I2C, for the warehouse.

The chip is driven through a two-call seam, `I2CBus.write(addr, data)` / `read(addr, n)`, so the
same driver runs on a Pi's `/dev/i2c-1` (smbus2, imported only when that bus is opened) and on
`SimulatedSht3x`, which answers like the chip: a single-shot measurement (command 0x2400, high
repeatability, no clock stretching) takes about 15 ms, a read before it is done is NACKed
(EREMOTEIO, as the kernel reports it), every 16-bit word is followed by its CRC-8 (polynomial
0x31, initial 0xFF), and unknown commands are NACKed.

Values are exact: hundredths of a degree and of a percent, as integers, from the datasheet's
formulas T = -45 + 175 * S / 65535 and RH = 100 * S / 65535 (rounded half up).
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from drivers.errors import DriverError

DEFAULT_ADDRESS = 0x44
CMD_MEASURE = b"\x24\x00"      # single shot, high repeatability, no clock stretching
CMD_SOFT_RESET = b"\x30\xa2"
CMD_READ_STATUS = b"\xf3\x2d"
MEASURE_S = 0.016              # datasheet: 15.5 ms at most for high repeatability


class ClimateError(DriverError):
    """The sensor did not answer, or answered with bytes that fail their CRC."""


class I2CBus(Protocol):
    def write(self, address: int, data: bytes) -> None: ...
    def read(self, address: int, n: int) -> bytes: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class ClimateReading:
    temp_c100: int   # hundredths of a degree Celsius
    rh_c100: int     # hundredths of a percent of relative humidity

    @property
    def temp_c(self) -> Decimal:
        return Decimal(self.temp_c100).scaleb(-2)

    @property
    def rh_pct(self) -> Decimal:
        return Decimal(self.rh_c100).scaleb(-2)


def crc8(data: bytes) -> int:
    """Sensirion's CRC-8: polynomial 0x31, initial value 0xFF, no reflection, no final XOR."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _div_round(n: int, d: int) -> int:
    return (2 * n + d) // (2 * d)


def convert(raw_t: int, raw_rh: int) -> ClimateReading:
    return ClimateReading(-4500 + _div_round(17500 * raw_t, 65535),
                          _div_round(10000 * raw_rh, 65535))


class SHT3x:
    def __init__(self, bus: I2CBus, address: int = DEFAULT_ADDRESS, *,
                 sleep: Callable[[float], None] = time.sleep, tries: int = 3):
        self.bus, self.address, self.sleep, self.tries = bus, address, sleep, tries

    def read(self) -> ClimateReading:
        self._write(CMD_MEASURE)
        data = b""
        for attempt in range(self.tries):
            self.sleep(MEASURE_S * (attempt + 1))
            try:
                data = self.bus.read(self.address, 6)
                break
            except OSError as exc:
                if exc.errno != errno.EREMOTEIO or attempt == self.tries - 1:
                    raise ClimateError(f"SHT3x at 0x{self.address:02x}: no measurement "
                                       f"({exc}); check the sensor's wiring") from None
        words = [_word(data[i:i + 3], self.address) for i in (0, 3)]
        return convert(*words)

    def reset(self) -> None:
        self._write(CMD_SOFT_RESET)
        self.sleep(0.002)

    def _write(self, command: bytes) -> None:
        try:
            self.bus.write(self.address, command)
        except OSError as exc:
            raise ClimateError(f"SHT3x at 0x{self.address:02x} does not answer ({exc}); "
                               "check the sensor's wiring and address (0x44 or 0x45)") from None


def _word(chunk: bytes, address: int) -> int:
    if len(chunk) != 3:
        raise ClimateError(f"SHT3x at 0x{address:02x}: short answer {chunk.hex()}")
    if crc8(chunk[:2]) != chunk[2]:
        raise ClimateError(f"SHT3x at 0x{address:02x}: CRC mismatch in {chunk.hex()} "
                           "(noise on the I2C lines? keep the cable short)")
    return int.from_bytes(chunk[:2], "big")


class SMBus2Bus:
    """A Linux I2C bus (`/dev/i2c-N`) through smbus2's plain read and write messages."""

    def __init__(self, bus: int):
        try:
            from smbus2 import SMBus, i2c_msg
        except ImportError as exc:
            raise ClimateError(f"smbus2 is not installed: {exc}") from None
        self._msg = i2c_msg
        try:
            self._bus = SMBus(bus)
        except OSError as exc:
            raise ClimateError(f"cannot open I2C bus {bus}: {exc}; enable I2C "
                               "(raspi-config) and give the service access to /dev/i2c-*") \
                from None

    def write(self, address: int, data: bytes) -> None:
        self._bus.i2c_rdwr(self._msg.write(address, data))

    def read(self, address: int, n: int) -> bytes:
        msg = self._msg.read(address, n)
        self._bus.i2c_rdwr(msg)
        return bytes(msg)

    def close(self) -> None:
        self._bus.close()


class SimulatedSht3x:
    """An I2C bus with one SHT3x on it, answering as the chip does (see the module's doc).

    Set `temp_c` and `rh_pct` (Decimal or str) to what the room should read; `unplugged` makes
    every transfer fail as a missing device does; `corrupt` flips a bit after the CRC is made.
    """

    def __init__(self, address: int = DEFAULT_ADDRESS, temp_c="21.50", rh_pct="65.00", *,
                 clock: Callable[[], float] = time.monotonic):
        self.address = address
        self.temp_c, self.rh_pct = Decimal(temp_c), Decimal(rh_pct)
        self.unplugged = False
        self.corrupt = False
        self._clock = clock
        self._ready_at: float | None = None
        self._pending = b""

    def _check(self, address: int) -> None:
        if self.unplugged or address != self.address:
            raise OSError(errno.ENXIO if self.unplugged else errno.EREMOTEIO,
                          "No such device or address" if self.unplugged else "Remote I/O error")

    def write(self, address: int, data: bytes) -> None:
        self._check(address)
        data = bytes(data)
        if data == CMD_MEASURE:
            self._ready_at = self._clock() + 0.0155
            self._pending = self._sample()
        elif data == CMD_SOFT_RESET:
            self._ready_at, self._pending = None, b""
        elif data == CMD_READ_STATUS:
            self._ready_at, self._pending = self._clock(), _with_crc(0x0000)
        else:
            raise OSError(errno.EREMOTEIO, "Remote I/O error")  # NACK

    def read(self, address: int, n: int) -> bytes:
        self._check(address)
        if self._ready_at is None or self._clock() < self._ready_at:
            raise OSError(errno.EREMOTEIO, "Remote I/O error")  # measuring: NACK
        data, self._ready_at, self._pending = self._pending[:n], None, b""
        if self.corrupt and data:
            data = bytes([data[0] ^ 0x01]) + data[1:]
        return data

    def close(self) -> None:
        pass

    def _sample(self) -> bytes:
        raw_t = int(((self.temp_c + 45) * 65535 / 175).to_integral_value())
        raw_rh = int((self.rh_pct * 65535 / 100).to_integral_value())
        return _with_crc(max(0, min(65535, raw_t))) + _with_crc(max(0, min(65535, raw_rh)))


def _with_crc(word: int) -> bytes:
    data = word.to_bytes(2, "big")
    return data + bytes([crc8(data)])


def open_bus(spec: str) -> I2CBus:
    """`sim` (a simulated SHT3x), or the bus number or device path (`1`, `/dev/i2c-1`)."""
    if spec == "sim":
        return SimulatedSht3x()
    number = spec.removeprefix("/dev/i2c-")
    if not number.isdigit():
        raise ClimateError(f"I2C bus {spec!r}: expected a number, /dev/i2c-N or sim")
    return SMBus2Bus(int(number))

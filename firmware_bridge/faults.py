"""Faults on a serial line, for the co-processor simulator: lost, corrupted and delayed frames,
noise between frames.

`FaultyPort` wraps a pyserial port and applies `Faults` to whole frames in both directions
(it cuts the stream at the 0x00 delimiters), so "one frame in ten lost" means exactly that.
Random choices come from a seeded generator: a failing run can be repeated.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from .frames import DELIMITER


@dataclass
class Faults:
    """Probabilities per frame (0.0-1.0), changeable while the link runs."""

    drop: float = 0.0        # the frame vanishes
    corrupt: float = 0.0     # one byte of the frame is changed (its CRC or COBS then fails)
    noise: float = 0.0       # random bytes are sent before the frame
    delay_s: float = 0.0     # every frame written waits this long first (a slow co-processor)
    seed: int = 1

    def clear(self) -> None:
        self.drop = self.corrupt = self.noise = self.delay_s = 0.0


class _FrameFilter:
    def __init__(self, faults: Faults, rng: random.Random):
        self.faults, self.rng = faults, rng
        self.buf = bytearray()
        self.dropped = self.corrupted = 0

    def apply(self, data: bytes) -> bytes:
        out = bytearray()
        self.buf += data
        while True:
            end = self.buf.find(DELIMITER)
            if end < 0:
                break
            frame = bytes(self.buf[:end + 1])
            del self.buf[:end + 1]
            out += self._one(frame)
        return bytes(out)

    def _one(self, frame: bytes) -> bytes:
        f, rng = self.faults, self.rng
        if f.drop and rng.random() < f.drop:
            self.dropped += 1
            return b""
        if f.corrupt and rng.random() < f.corrupt and len(frame) > 1:
            i = rng.randrange(len(frame) - 1)
            frame = frame[:i] + bytes([(frame[i] ^ rng.randrange(1, 256)) or 0x55]) \
                + frame[i + 1:]
            self.corrupted += 1
        if f.noise and rng.random() < f.noise:
            frame = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 8))) \
                + DELIMITER + frame
        return frame


class FaultyPort:
    """A pyserial-like port that passes everything through `faults` (see Faults)."""

    def __init__(self, port, faults: Faults | None = None):
        self._port = port
        self.faults = faults or Faults()
        rng = random.Random(self.faults.seed)
        self._out = _FrameFilter(self.faults, rng)
        self._in = _FrameFilter(self.faults, random.Random(rng.random()))
        self._lock = threading.Lock()

    @property
    def dropped(self) -> int:
        return self._out.dropped + self._in.dropped

    @property
    def corrupted(self) -> int:
        return self._out.corrupted + self._in.corrupted

    @property
    def in_waiting(self) -> int:
        return self._port.in_waiting

    def read(self, n: int = 1) -> bytes:
        return self._in.apply(self._port.read(n))

    def write(self, data: bytes) -> int:
        if self.faults.delay_s:
            time.sleep(self.faults.delay_s)
        with self._lock:
            out = self._out.apply(data)
        if out:
            self._port.write(out)
        return len(data)

    def write_raw(self, data: bytes) -> None:
        """Bytes straight onto the line, past every fault (garbage, half frames)."""
        self._port.write(data)

    def flush(self) -> None:
        self._port.flush()

    def cancel_read(self) -> None:
        if hasattr(self._port, "cancel_read"):
            self._port.cancel_read()

    def close(self) -> None:
        self._port.close()

"""A simulated RF field: tagged bales in front of antennas, for the reader simulators.

Each round of inventory reads every tag on its own antenna unless the read is missed, with
RSSI noise around the tag's mean, and sometimes on a neighbouring antenna at a lower RSSI
(cross-reads through a wall or a door are normal in a store room). Tags come and go by hand
(`add`, `remove`, `move`) or at random (`churn`). Seeded, so a test run can be repeated.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass


@dataclass
class SimTag:
    epc: bytes
    antenna: int
    rssi: float        # mean dBm at its own antenna


@dataclass(frozen=True)
class Sighting:
    epc: bytes
    antenna: int
    rssi: int


class TagField:
    def __init__(self, antennas: int = 4, *, seed: int = 0, miss_rate: float = 0.2,
                 rssi_noise_db: float = 3.0, cross_read_rate: float = 0.1,
                 cross_read_loss_db: float = 15.0, churn_rate: float = 0.0):
        if antennas < 1:
            raise ValueError("a field needs at least one antenna")
        self.antennas = antennas
        self.miss_rate, self.rssi_noise_db = miss_rate, rssi_noise_db
        self.cross_read_rate, self.cross_read_loss_db = cross_read_rate, cross_read_loss_db
        self.churn_rate = churn_rate
        self.rng = random.Random(seed)
        self._tags: dict[bytes, SimTag] = {}
        self._lock = threading.Lock()

    # -- the bales -------------------------------------------------------------------------------

    def add(self, epc: bytes | str, antenna: int = 1, rssi: float = -55.0) -> bytes:
        epc = bytes.fromhex(epc) if isinstance(epc, str) else bytes(epc)
        if not 1 <= antenna <= self.antennas:
            raise ValueError(f"antenna {antenna} is not in 1..{self.antennas}")
        with self._lock:
            self._tags[epc] = SimTag(epc, antenna, rssi)
        return epc

    def populate(self, count: int, prefix: bytes = b"\xe2\x80") -> list[bytes]:
        """`count` new 96-bit tags spread over the antennas, means between -70 and -40 dBm."""
        added = []
        for _ in range(count):
            epc = prefix + self.rng.randbytes(12 - len(prefix))
            added.append(self.add(epc, self.rng.randint(1, self.antennas),
                                  self.rng.uniform(-70, -40)))
        return added

    def remove(self, epc: bytes | str) -> None:
        epc = bytes.fromhex(epc) if isinstance(epc, str) else bytes(epc)
        with self._lock:
            self._tags.pop(epc, None)

    def move(self, epc: bytes | str, antenna: int, rssi: float | None = None) -> None:
        epc = bytes.fromhex(epc) if isinstance(epc, str) else bytes(epc)
        with self._lock:
            tag = self._tags[epc]
            tag.antenna = antenna
            if rssi is not None:
                tag.rssi = rssi

    def epcs(self) -> list[bytes]:
        with self._lock:
            return list(self._tags)

    # -- one inventory round ---------------------------------------------------------------------

    def round(self) -> list[Sighting]:
        with self._lock:
            rng = self.rng
            if self.churn_rate and self._tags and rng.random() < self.churn_rate:
                del self._tags[rng.choice(list(self._tags))]
                epc = b"\xe2\x80" + rng.randbytes(10)
                self._tags[epc] = SimTag(epc, rng.randint(1, self.antennas),
                                         rng.uniform(-70, -40))
            out = []
            for tag in self._tags.values():
                if rng.random() >= self.miss_rate:
                    out.append(Sighting(tag.epc, tag.antenna, self._noisy(tag.rssi)))
                if self.antennas > 1 and rng.random() < self.cross_read_rate:
                    other = rng.choice([a for a in range(1, self.antennas + 1)
                                        if a != tag.antenna])
                    out.append(Sighting(tag.epc, other,
                                        self._noisy(tag.rssi - self.cross_read_loss_db)))
            rng.shuffle(out)
            return out

    def _noisy(self, mean: float) -> int:
        return max(-100, min(-20, round(self.rng.gauss(mean, self.rssi_noise_db))))

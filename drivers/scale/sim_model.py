"""What a simulated indicator displays over time: a load settling to a target, with noise
while it moves, overload above capacity, and the zero and tare keys.

Pure: every answer is a function of the time passed in (monotonic seconds) and of a seeded
random generator, so tests can drive it without sleeping.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Display:
    """The indicator's display at one moment; `weight` is net of zero and tare."""

    weight: Decimal
    stable: bool
    overload: bool = False
    underload: bool = False
    tare: Decimal = Decimal(0)


class WeightModel:
    """A load on a platform, in the display unit `unit`, shown in steps of `division`.

    After `set_target` the display moves linearly to the target over `settle_s`, jittering by
    up to `noise_divisions` divisions, then shows the target exactly (stable). A load above
    `capacity` is an overload; `force_overload`/`force_underload` pin those conditions.
    """

    def __init__(self, *, division: Decimal = Decimal("0.01"), unit: str = "kg",
                 capacity: Decimal = Decimal("150"), settle_s: float = 0.3,
                 noise_divisions: int = 2, seed: int = 0):
        self.division, self.unit, self.capacity = division, unit, capacity
        self.settle_s, self.noise_divisions = settle_s, noise_divisions
        self._random = random.Random(seed)
        self._start = self._target = Decimal(0)
        self._t0 = float("-inf")
        self.zero_offset = Decimal(0)
        self.tare = Decimal(0)
        self.force_overload = self.force_underload = False

    @property
    def decimals(self) -> int:
        return max(0, -self.division.as_tuple().exponent)

    @property
    def target(self) -> Decimal:
        return self._target

    def set_target(self, weight: Decimal, now: float) -> None:
        """Put a load of `weight` (gross, before zero and tare) on the platform at `now`."""
        self._start = self._gross(now)
        self._target, self._t0 = Decimal(weight), now

    def zero(self, now: float) -> bool:
        """The zero key: only when stable; returns whether it was done."""
        if not self.display(now).stable:
            return False
        self.zero_offset = self._target
        return True

    def take_tare(self, now: float) -> bool:
        if not self.display(now).stable:
            return False
        self.tare = self._target - self.zero_offset
        return True

    def display(self, now: float) -> Display:
        gross = self._gross(now) - self.zero_offset
        settling = now - self._t0 < self.settle_s
        over = self.force_overload or self._target - self.zero_offset > self.capacity
        return Display(self._quantize(gross - self.tare), not settling and not over,
                       overload=over, underload=self.force_underload, tare=self.tare)

    def _gross(self, now: float) -> Decimal:
        elapsed = now - self._t0
        if elapsed >= self.settle_s:
            return self._target
        share = Decimal(str(round(max(elapsed, 0.0) / self.settle_s, 3)))
        noise = self._random.randint(-self.noise_divisions, self.noise_divisions)
        return self._start + (self._target - self._start) * share + noise * self.division

    def _quantize(self, value: Decimal) -> Decimal:
        steps = (value / self.division).to_integral_value()
        return (steps * self.division).quantize(self.division)

"""May this reading be used for a sale? A check with reasons, for the clerk's display.

Class III non-automatic scales (JJG 539, OIML R76): only a stable weight may be used, the
minimum load is 20 e (e = the verification scale division), and a weight outside the
indicator's range is never used. The policy is configuration; the rules are here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from .reading import Reading, WeightKind


class Refusal(enum.Enum):
    """Why a reading may not be used for a sale (the value is a stable code for logs)."""

    NO_WEIGHT = "no_weight"
    OVERLOAD = "overload"
    UNDERLOAD = "underload"
    OUT_OF_RANGE = "out_of_range"
    ABOVE_CAPACITY = "above_capacity"
    NEGATIVE = "negative"
    BELOW_MINIMUM = "below_minimum"
    TARE_SHOWN = "tare_shown"
    UNSTABLE = "unstable"


@dataclass(frozen=True)
class SalePolicy:
    """`division_g` is e in grams (Decimal, e.g. Decimal("10") or Decimal("0.5")); the
    minimum load is `min_divisions` * e; `capacity_g`, if set, is Max: anything above it is
    refused, for indicators whose frames carry no overload flag (XK3190-A9)."""

    division_g: Decimal
    min_divisions: int = 20
    capacity_g: Decimal | None = None

    def __post_init__(self):
        if not isinstance(self.division_g, Decimal) or self.division_g <= 0:
            raise ValueError("division_g must be a positive Decimal")
        if self.min_divisions < 0:
            raise ValueError("min_divisions must not be negative")
        if self.capacity_g is not None and not isinstance(self.capacity_g, Decimal):
            raise ValueError("capacity_g must be a Decimal")

    @property
    def minimum_g(self) -> Decimal:
        return self.division_g * self.min_divisions


@dataclass(frozen=True)
class Readiness:
    """The verdict: `ok`, or the reasons (each with a message for people)."""

    reasons: tuple[tuple[Refusal, str], ...]

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def codes(self) -> tuple[Refusal, ...]:
        return tuple(code for code, _ in self.reasons)

    def __str__(self) -> str:
        return "ready" if self.ok else "; ".join(msg for _, msg in self.reasons)


def check_sale(reading: Reading, policy: SalePolicy, *, stable: bool | None = None
               ) -> Readiness:
    """Check `reading` against `policy`.

    `stable` is the inferred verdict (`StabilityDetector`) for protocols without a flag. The
    indicator's own flag, where it has one, wins when it says unstable; a reading is stable
    only if its flag, or else `stable`, says so.
    """
    reasons: list[tuple[Refusal, str]] = []
    if reading.overload:
        reasons.append((Refusal.OVERLOAD, "the scale is overloaded"))
    if reading.underload:
        reasons.append((Refusal.UNDERLOAD, "the scale reads below its range"))
    if reading.out_of_range:
        reasons.append((Refusal.OUT_OF_RANGE, "the weight is out of the indicator's range"))
    if reading.weight is None or reading.unit is None:
        if not reasons:
            reasons.append((Refusal.NO_WEIGHT, "the indicator sent no weight"))
    else:
        grams = reading.weight_in_grams()
        unit = reading.unit.value
        if reading.kind is WeightKind.TARE:
            reasons.append((Refusal.TARE_SHOWN, "the indicator shows the tare, not the load"))
        if grams < 0:
            reasons.append((Refusal.NEGATIVE, f"negative weight {reading.weight} {unit}"))
        elif grams < policy.minimum_g:
            reasons.append((Refusal.BELOW_MINIMUM,
                            f"{reading.weight} {unit} is below the minimum load "
                            f"{policy.minimum_g.normalize():f} g ({policy.min_divisions} e)"))
        if policy.capacity_g is not None and grams > policy.capacity_g:
            reasons.append((Refusal.ABOVE_CAPACITY,
                            f"{reading.weight} {unit} is above the capacity "
                            f"{policy.capacity_g.normalize():f} g"))
    effective = reading.stable if reading.stable is not None else stable
    if effective is not True:
        reasons.append((Refusal.UNSTABLE, "the weight is not stable" if effective is False
                        else "stability is unknown (no indicator flag, no inferred verdict)"))
    return Readiness(tuple(reasons))

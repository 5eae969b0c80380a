"""Deductions for reelable ratio, moisture and defective cocoons, as rules read from data.

Every rule has the same shape, so a province's practice is expressed in the price table and
not in code: a measured percentage is compared with a threshold; each percentage point beyond
the threshold (proportionally, parts of a point included) deducts `rate` percent of the lot's
mass or of its price; beyond an optional limit the lot is refused. Which side is "beyond" is a
fact of the measure, not a choice: moisture and defects get worse upward, the reelable-cocoon
ratio gets worse downward.

Examples (percent): moisture threshold 15, rate 1.5, refuse beyond 21 -> 17 % moisture deducts
3 % of the mass, 21 % deducts 9 %, 21.01 % is refused. Reelable threshold 100, rate 1 -> a 93 %
reelable lot is paid for 93 % of its mass (tables quoted "at 100 % reelable ratio").
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from agent.contract.pricing.errors import MeasurementError, PriceTableError, PurchaseRefused
from agent.contract.pricing.money import exact, text, to_decimal

REELABLE = "reelable"
MOISTURE = "moisture"
DEFECT_PREFIX = "defects."


class Target(Enum):
    """What a deduction reduces: the payable mass, or the unit price."""

    MASS = "mass"
    PRICE = "price"


def describe(measure: str) -> str:
    """Words for the clerk: "moisture", "reelable-cocoon ratio", "mouldy cocoons"."""
    if measure == REELABLE:
        return "reelable-cocoon ratio"
    if measure.startswith(DEFECT_PREFIX):
        return f"{measure[len(DEFECT_PREFIX):]} cocoons"
    return measure


@dataclass(frozen=True)
class DeductionRule:
    """One deduction rule of a price table, found at `deductions.<measure>`.

    `measure` is "reelable", "moisture" or "defects.<kind>" (kind: perforated, stained, ...).
    `rate` is the percent of mass or price deducted per percentage point beyond
    `threshold_pct`; `refuse_beyond_pct`, if set, is the last acceptable value.
    """

    measure: str
    applies_to: Target
    threshold_pct: Decimal
    rate: Decimal
    refuse_beyond_pct: Decimal | None = None

    def __post_init__(self) -> None:
        where = f"deductions.{self.measure}"
        if not 0 <= self.threshold_pct <= 100:
            raise PriceTableError(f"{where}.threshold_pct", "must be between 0 and 100")
        if self.rate < 0:
            raise PriceTableError(f"{where}.rate", "must not be negative")
        limit = self.refuse_beyond_pct
        if limit is not None:
            if not 0 <= limit <= 100:
                raise PriceTableError(f"{where}.refuse_beyond_pct", "must be between 0 and 100")
            if self.worse_below and limit > self.threshold_pct:
                raise PriceTableError(f"{where}.refuse_beyond_pct",
                                      "must not be above threshold_pct (lower is worse here)")
            if not self.worse_below and limit < self.threshold_pct:
                raise PriceTableError(f"{where}.refuse_beyond_pct",
                                      "must not be below threshold_pct (higher is worse here)")

    @property
    def worse_below(self) -> bool:
        return self.measure == REELABLE

    def apply(self, measured_pct: object) -> Deduction:
        """The deduction for a measured percentage; PurchaseRefused beyond the limit."""
        if measured_pct is None:
            raise MeasurementError(
                f"{describe(self.measure)} was not measured, but the price table deducts for "
                "it; measure the sample and enter it (enter 0 when there is none)")
        value = to_decimal(measured_pct, f"{describe(self.measure)} (%)", MeasurementError)
        if not 0 <= value <= 100:
            raise MeasurementError(
                f"{describe(self.measure)} {text(value)} % is not a percentage; measure again")
        limit = self.refuse_beyond_pct
        if limit is not None and (value < limit if self.worse_below else value > limit):
            side = "below the minimum" if self.worse_below else "above the limit"
            raise PurchaseRefused(
                f"{describe(self.measure)} {text(value)} % is {side} of {text(limit)} % in the "
                "price table: the lot cannot be bought as it is")
        with exact():
            beyond = self.threshold_pct - value if self.worse_below else value - self.threshold_pct
            pct = max(beyond, Decimal(0)) * self.rate
        return Deduction(self.measure, value, self.applies_to, pct)


@dataclass(frozen=True)
class Deduction:
    """A rule applied to one lot: `pct` percent of the mass or price is deducted (may be 0)."""

    measure: str
    measured_pct: Decimal
    applies_to: Target
    pct: Decimal

"""Grading a cocoon sample: from a measured shell weight or shell ratio to a signed grade.

A grade is a signed number of steps from the base (standard) grade: 0 is the base grade, +1 one
step better, -1 one step worse. Two methods exist, and the price table says which one a station
uses and with which constants (the constants are data, never code):

- dry shell (GB/T 19113 style): the dry shell weight of a 50 g sample against a base weight
  (9.2 g), in steps of 0.2 g, where a part step of 0.1 g or more counts as a full step;
- shell ratio (provincial tables): bands of shell ratio (0.5 % wide around a 21 % standard),
  each band one grade and one price difference.

The rule dataclasses validate themselves and name the price-table field at fault, because the
price table parser builds them straight from the document.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from agent.contract.pricing.errors import MeasurementError, PriceTableError, PurchaseRefused
from agent.contract.pricing.money import exact, text, to_decimal


@dataclass(frozen=True)
class Grade:
    """A signed grade step from the base grade, e.g. +2 (two steps above the base)."""

    step: int

    @property
    def label(self) -> str:
        """The printable grade: "0" for the base grade, "+1", "-2" and so on."""
        return "0" if self.step == 0 else f"{self.step:+d}"


@dataclass(frozen=True)
class DryShellRule:
    """The dry-shell grading constants of a price table (`grading` with method dry_shell).

    The distance of the shell weight from `base_shell_g` is divided into whole `step_g` steps;
    a remainder of `carry_g` or more counts as one more step, a smaller one is dropped. Below
    the base the same rule applies to the shortfall, so grading is symmetric around the base:
    with 9.2 / 0.2 / 0.1, 9.3 g is +1 and 9.1 g is -1, while 9.29 g and 9.11 g are both 0.
    """

    METHOD: ClassVar[str] = "dry_shell"

    sample_g: Decimal
    base_shell_g: Decimal
    step_g: Decimal
    carry_g: Decimal

    def __post_init__(self) -> None:
        if self.sample_g <= 0:
            raise PriceTableError("grading.sample_g", "must be positive")
        if not 0 < self.base_shell_g < self.sample_g:
            raise PriceTableError("grading.base_shell_g",
                                  f"must be between 0 and sample_g ({text(self.sample_g)})")
        if self.step_g <= 0:
            raise PriceTableError("grading.step_g", "must be positive")
        if not 0 < self.carry_g <= self.step_g:
            raise PriceTableError("grading.carry_g",
                                  f"must be above 0 and at most step_g ({text(self.step_g)})")

    def grade(self, shell_g: object) -> Grade:
        """The grade of a sample whose dried shells weigh `shell_g` grams."""
        if shell_g is None:
            raise MeasurementError(
                f"missing sample: this table grades by the dry shell weight of a "
                f"{text(self.sample_g)} g sample; weigh the dried shells and enter shell_g")
        shell = to_decimal(shell_g, "shell_g (dry shell weight of the sample, g)",
                           MeasurementError)
        if not 0 < shell < self.sample_g:
            raise MeasurementError(
                f"shell_g {text(shell)} g is impossible for a {text(self.sample_g)} g sample; "
                "weigh the dried shells again")
        with exact():
            distance = abs(shell - self.base_shell_g)
            steps, remainder = divmod(distance, self.step_g)
        steps = int(steps) + (1 if remainder >= self.carry_g else 0)
        return Grade(steps if shell >= self.base_shell_g else -steps)


@dataclass(frozen=True)
class RatioBand:
    """Shell ratios from `from_pct` (inclusive) up to `to_pct` (exclusive), paid `diff` more
    (or less, if negative) than the base price, in the table's quoting unit."""

    from_pct: Decimal
    to_pct: Decimal
    diff: Decimal

    def holds(self, ratio_pct: Decimal) -> bool:
        return self.from_pct <= ratio_pct < self.to_pct


@dataclass(frozen=True)
class ShellRatioRule:
    """Shell-ratio grading of a price table (`grading` with method shell_ratio).

    Bands are contiguous and ordered; the band starting at `standard_pct` is grade 0 and must
    have a zero difference; each band above it is one grade up, each below one grade down. A
    higher shell ratio never pays less (differences never decrease), which catches typing
    errors in a table before it prices anything.
    """

    METHOD: ClassVar[str] = "shell_ratio"

    standard_pct: Decimal
    bands: tuple[RatioBand, ...]

    def __post_init__(self) -> None:
        if not self.bands:
            raise PriceTableError("grading.bands", "must list at least one band")
        for i, band in enumerate(self.bands):
            where = f"grading.bands[{i}]"
            if not 0 <= band.from_pct < 100:
                raise PriceTableError(f"{where}.from_pct", "must be from 0 to below 100")
            if not band.from_pct < band.to_pct <= 100:
                raise PriceTableError(f"{where}.to_pct", "must be above from_pct, at most 100")
            if i and band.from_pct != self.bands[i - 1].to_pct:
                raise PriceTableError(f"{where}.from_pct",
                                      f"must equal the previous band's to_pct "
                                      f"({text(self.bands[i - 1].to_pct)}): bands are contiguous")
            if i and band.diff < self.bands[i - 1].diff:
                raise PriceTableError(f"{where}.diff",
                                      "must not be lower than the previous band's diff: a higher "
                                      "shell ratio never pays less")
        standard = self._standard_index()
        if self.bands[standard].diff != 0:
            raise PriceTableError(f"grading.bands[{standard}].diff",
                                  "the standard band (grade 0) must have diff \"0\"")

    def _standard_index(self) -> int:
        for i, band in enumerate(self.bands):
            if band.from_pct == self.standard_pct:
                return i
        raise PriceTableError("grading.standard_pct", "must be the from_pct of one of the bands")

    def grade(self, ratio_pct: object) -> tuple[Grade, RatioBand]:
        """The grade of a sample with shell ratio `ratio_pct` (percent), and its band."""
        if ratio_pct is None:
            raise MeasurementError("missing sample: this table grades by shell ratio; measure "
                                   "the sample's shell ratio and enter shell_ratio_pct")
        ratio = to_decimal(ratio_pct, "shell_ratio_pct", MeasurementError)
        if not 0 < ratio < 100:
            raise MeasurementError(f"shell ratio {text(ratio)} % is impossible; measure again")
        for i, band in enumerate(self.bands):
            if band.holds(ratio):
                return Grade(i - self._standard_index()), band
        if ratio < self.bands[0].from_pct:
            raise PurchaseRefused(
                f"shell ratio {text(ratio)} % is below the lowest band of the price table "
                f"({text(self.bands[0].from_pct)} %): these cocoons cannot be bought at this table")
        raise PurchaseRefused(
            f"shell ratio {text(ratio)} % is at or above the top of the price table "
            f"({text(self.bands[-1].to_pct)} %): check the measurement, or ask for a table "
            "that covers it")

"""From a graded, weighed lot and a price table to a unit price and an amount, exactly.

    grade            = grading rule of the table (dry shell weight or shell ratio)
    graded price     = the grade's price in the table's quoting unit (yuan/kg or yuan/50kg)
    mass deduction % = sum of the deductions that apply to mass
    price deduction% = sum of the deductions that apply to price
    unit price       = round4(graded price * (100 - price deduction %) / 100 / kg per quote)
    payable grams    = net grams * (100 - mass deduction %) / 100           (exact, not rounded)
    amount           = round2(payable grams * unit price / 1000)

Everything but the two named roundings is exact Decimal arithmetic; both roundings use the
table's mode. Rounding the unit price (to 0.0001 yuan/kg) before the amount means three printed
numbers agree by themselves: amount = payable kg x unit price, rounded to the fen. A
quote from a table in yuan per 50 kg with prices in fen converts without any rounding, since a
fen divided by 50 is 0.0002 yuan.

Pure functions: the purchase workflow calls `price()` and puts `pricing_record()` (module
agent.contract.pricing.record) into its `purchase.recorded` event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

from agent.contract.pricing.deductions import DEFECT_PREFIX, MOISTURE, REELABLE, Deduction, Target
from agent.contract.pricing.errors import MeasurementError, PurchaseRefused
from agent.contract.pricing.grading import DryShellRule, Grade
from agent.contract.pricing.money import FEN, UNIT_PRICE_QUANTUM, exact, round_to, text, to_decimal
from agent.contract.pricing.tables import PriceTable

HUNDRED = Decimal(100)
GRAMS_PER_KG = Decimal(1000)
MAX_NET_G = 10**9  # 1000 t: far above any scale, and small enough for exact arithmetic


@dataclass(frozen=True)
class Lot:
    """What was measured for one purchase: the net weight and the sample's measurements.

    Values may be given as Decimal or as plain decimal strings ("9.35"); floats are refused.
    Only the measurements the table uses are needed: `shell_g` (dry shell weight of the sample,
    g) or `shell_ratio_pct`, and a percentage for each deduction the table has (`defects_pct`
    maps a defect kind such as "mouldy" to its share of the sample's mass, percent).
    """

    net_g: int
    shell_g: Decimal | None = None
    shell_ratio_pct: Decimal | None = None
    moisture_pct: Decimal | None = None
    reelable_pct: Decimal | None = None
    defects_pct: Mapping[str, Decimal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.net_g, bool) or not isinstance(self.net_g, int):
            raise MeasurementError(f"net weight must be whole grams (an int), not {self.net_g!r}")
        if self.net_g <= 0:
            raise MeasurementError(f"net weight {self.net_g} g is not positive: check the tare "
                                   "and weigh again")
        if self.net_g > MAX_NET_G:
            raise MeasurementError(f"net weight {self.net_g} g is beyond any scale; weigh again")
        for name in ("shell_g", "shell_ratio_pct", "moisture_pct", "reelable_pct"):
            value = getattr(self, name)
            if value is not None:
                number = to_decimal(value, name, MeasurementError)
                if number < 0:
                    raise MeasurementError(f"{name} {text(number)} is negative; measure again")
                object.__setattr__(self, name, number)
        if not isinstance(self.defects_pct, Mapping) or not all(
                isinstance(k, str) for k in self.defects_pct):
            raise MeasurementError("defects_pct must map a defect kind (a word) to a percentage")
        defects = {}
        for kind in sorted(self.defects_pct):
            number = to_decimal(self.defects_pct[kind], f"defects_pct[{kind!r}]",
                                MeasurementError)
            if number < 0:
                raise MeasurementError(f"{kind} cocoons {text(number)} % is negative")
            defects[kind] = number
        object.__setattr__(self, "defects_pct", MappingProxyType(defects))


@dataclass(frozen=True)
class Quote:
    """The priced lot: every output of pricing, with the table and lot it came from."""

    table: PriceTable
    lot: Lot
    grade: Grade
    graded_price: Decimal  # quoting unit, before price deductions
    deductions: tuple[Deduction, ...]  # one per rule of the table, zero ones included
    mass_deduct_pct: Decimal
    price_deduct_pct: Decimal
    payable_g: Decimal  # exact, may have a fraction of a gram
    unit_price: Decimal  # yuan/kg, 4 decimal places
    amount: Decimal  # yuan, 2 decimal places


def price(table: PriceTable, lot: Lot) -> Quote:
    """Grade and price `lot` with `table`; MeasurementError or PurchaseRefused say why not.

    The table's validity period is not checked here (the store picks the table in force, and a
    record must stay recomputable after its table expired).
    """
    grade, band = _grade(table, lot)
    deductions = _deductions(table, lot)
    with exact():
        mass_pct = sum((d.pct for d in deductions if d.applies_to is Target.MASS), Decimal(0))
        price_pct = sum((d.pct for d in deductions if d.applies_to is Target.PRICE), Decimal(0))
    for what, pct in (("mass", mass_pct), ("price", price_pct)):
        if pct >= HUNDRED:
            raise PurchaseRefused(f"the deductions from the {what} add up to {text(pct)} %: "
                                  "nothing would be paid; the lot cannot be bought")
    graded = table.graded_price(grade, band)
    with exact():
        per_kg = graded * (HUNDRED - price_pct) / HUNDRED / table.quote_unit.kg
        payable_g = lot.net_g * (HUNDRED - mass_pct) / HUNDRED
    unit_price = round_to(per_kg, UNIT_PRICE_QUANTUM, table.rounding)
    if unit_price <= 0:
        raise PurchaseRefused(f"the unit price rounds to {text(unit_price)} yuan/kg; "
                              "the lot cannot be bought")
    with exact():
        exact_amount = payable_g * unit_price / GRAMS_PER_KG
    return Quote(table, lot, grade, graded, deductions, mass_pct, price_pct, payable_g,
                 unit_price, round_to(exact_amount, FEN, table.rounding))


def _grade(table: PriceTable, lot: Lot):
    if isinstance(table.grading, DryShellRule):
        if lot.shell_ratio_pct is not None:
            raise MeasurementError(f"{table.describe()} grades by dry shell weight (shell_g); "
                                   "a shell ratio was given instead")
        return table.grading.grade(lot.shell_g), None
    if lot.shell_g is not None:
        raise MeasurementError(f"{table.describe()} grades by shell ratio (shell_ratio_pct); "
                               "a dry shell weight was given instead")
    return table.grading.grade(lot.shell_ratio_pct)


def _deductions(table: PriceTable, lot: Lot) -> tuple[Deduction, ...]:
    unknown = sorted(set(lot.defects_pct) - set(table.defect_kinds()))
    if unknown:
        known = ", ".join(table.defect_kinds()) or "none"
        raise MeasurementError(f"unknown defect kind {', '.join(unknown)}; {table.describe()} "
                               f"knows: {known}")
    measured = {REELABLE: lot.reelable_pct, MOISTURE: lot.moisture_pct}
    measured.update({DEFECT_PREFIX + k: v for k, v in lot.defects_pct.items()})
    return tuple(rule.apply(measured.get(rule.measure)) for rule in table.deductions)

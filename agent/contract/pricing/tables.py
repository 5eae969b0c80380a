"""Price tables: the versioned, backend-signed document that turns a grade into a price.

Everything that differs between provinces and seasons is here and nowhere in code: the base
price and its quoting unit (yuan per kg or per 50 kg), the grading constants, the price of each
grade, the deduction rules and the rounding mode. The JSON document (docs/pricing.md, with a
complete example) carries every decimal as a string; `parse_price_table` validates it once into
frozen dataclasses, and every error names the field at fault. The document's SHA-256 (over its
RFC 8785 canonical form) goes into each pricing record, so a record names the exact table used.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any

from agent.contract.canonical import canonical, sha256_hex
from agent.contract.errors import EventFormatError
from agent.contract.pricing.deductions import (
    DEFECT_PREFIX,
    MOISTURE,
    REELABLE,
    DeductionRule,
    Target,
)
from agent.contract.pricing.errors import PriceTableError, PurchaseRefused
from agent.contract.pricing.grading import DryShellRule, Grade, RatioBand, ShellRatioRule
from agent.contract.pricing.money import Rounding, exact, is_decimal_text

FORMAT = "cocoon-price-table/1"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
DEFECT_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
GRADE_KEY_RE = re.compile(r"^(0|-?[1-9][0-9]{0,2})$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
MAX_VERSION = 2**53 - 1
MAX_GRADE = 999  # grades are written with at most three digits


class QuoteUnit(Enum):
    """The unit the table's prices are quoted in; unit prices are always yuan per kg."""

    PER_KG = "yuan/kg"
    PER_50KG = "yuan/50kg"

    @property
    def kg(self) -> Decimal:
        return Decimal(50) if self is QuoteUnit.PER_50KG else Decimal(1)


@dataclass(frozen=True)
class PerStepPrices:
    """Grade g is paid base + g * per_step; grades outside [min_grade, max_grade] are refused."""

    per_step: Decimal
    min_grade: int
    max_grade: int

    def price(self, base: Decimal, grade: Grade) -> Decimal:
        if not self.min_grade <= grade.step <= self.max_grade:
            raise _grade_not_priced(grade, self.min_grade, self.max_grade)
        with exact():
            return base + grade.step * self.per_step


@dataclass(frozen=True)
class PerGradePrices:
    """Each grade's price listed in full; grades not listed are refused."""

    prices: tuple[tuple[int, Decimal], ...]  # (grade, price), ascending and contiguous

    def price(self, base: Decimal, grade: Grade) -> Decimal:
        for step, price in self.prices:
            if step == grade.step:
                return price
        raise _grade_not_priced(grade, self.prices[0][0], self.prices[-1][0])


def _grade_not_priced(grade: Grade, lowest: int, highest: int) -> PurchaseRefused:
    return PurchaseRefused(
        f"grade {grade.label} is outside the grades the price table prices "
        f"({Grade(lowest).label} to {Grade(highest).label}): check the sample, or ask the "
        "backend for a table that covers it")


@dataclass(frozen=True)
class PriceTable:
    """A validated price table. Prices are in `quote_unit`; see docs/pricing.md."""

    table_id: str
    version: int
    season: str
    currency: str
    valid_from: datetime
    valid_until: datetime  # exclusive
    quote_unit: QuoteUnit
    base_price: Decimal
    grading: DryShellRule | ShellRatioRule
    grade_prices: PerStepPrices | PerGradePrices | None  # None with shell-ratio bands
    deductions: tuple[DeductionRule, ...]  # reelable, moisture, then defects by kind
    rounding: Rounding
    digest: str  # SHA-256 of the canonical JSON document

    def valid_at(self, when: datetime) -> bool:
        return self.valid_from <= when < self.valid_until

    def graded_price(self, grade: Grade, band: RatioBand | None = None) -> Decimal:
        """The price of a grade in the quoting unit, before deductions (band: shell ratio)."""
        if isinstance(self.grading, ShellRatioRule):
            if band is None:
                raise ValueError("shell-ratio tables price a band, not a bare grade")
            with exact():
                return self.base_price + band.diff
        return self.grade_prices.price(self.base_price, grade)

    def defect_kinds(self) -> tuple[str, ...]:
        return tuple(r.measure[len(DEFECT_PREFIX):] for r in self.deductions
                     if r.measure.startswith(DEFECT_PREFIX))

    def describe(self) -> str:
        return f"price table {self.table_id} v{self.version} ({self.season})"


# -- parsing -----------------------------------------------------------------------------


def parse_price_table(doc: Any) -> PriceTable:
    """Validate a price table document (the body of a `price_table.set` command)."""
    top = _Obj(doc, "", required={"format", "id", "version", "season", "currency", "valid_from",
                                  "valid_until", "price_unit", "base_price", "grading",
                                  "deductions"},
               optional={"grade_price", "rounding"})
    if top.raw("format") != FORMAT:
        raise PriceTableError("format", f"must be {FORMAT!r}")
    version = top.integer("version")
    if not 1 <= version <= MAX_VERSION:
        raise PriceTableError("version", "must be a positive integer")
    if top.raw("currency") != "CNY":
        raise PriceTableError("currency", "must be \"CNY\" (prices are in yuan)")
    valid_from, valid_until = top.timestamp("valid_from"), top.timestamp("valid_until")
    if valid_until <= valid_from:
        raise PriceTableError("valid_until", "must be later than valid_from")
    unit_text = top.raw("price_unit")
    units = {u.value: u for u in QuoteUnit}
    if unit_text not in units:
        raise PriceTableError("price_unit", f"must be one of {sorted(units)}")
    base = top.decimal("base_price")
    if base <= 0:
        raise PriceTableError("base_price", "must be positive")
    grading = _grading(_Obj(top.raw("grading"), "grading", required={"method"},
                            optional=_GRADING_FIELDS))
    grade_prices = _grade_prices(top, grading, base)
    rounding_text = top.raw("rounding", Rounding.HALF_UP.value)
    modes = {r.value: r for r in Rounding}
    if rounding_text not in modes:
        raise PriceTableError("rounding", f"must be one of {sorted(modes)}")
    try:
        digest = sha256_hex(canonical(doc))
    except EventFormatError as exc:
        raise PriceTableError("(document)", f"not canonical JSON: {exc}") from None
    return PriceTable(
        table_id=top.name("id"), version=version, season=top.name("season"), currency="CNY",
        valid_from=valid_from, valid_until=valid_until, quote_unit=units[unit_text],
        base_price=base, grading=grading, grade_prices=grade_prices,
        deductions=_deductions(_Obj(top.raw("deductions"), "deductions", required=set(),
                                    optional={REELABLE, MOISTURE, "defects"})),
        rounding=modes[rounding_text], digest=digest,
    )


_GRADING_FIELDS = {"sample_g", "base_shell_g", "step_g", "carry_g", "standard_pct", "bands"}


def _grading(obj: _Obj) -> DryShellRule | ShellRatioRule:
    method = obj.raw("method")
    if method == DryShellRule.METHOD:
        obj.only({"method", "sample_g", "base_shell_g", "step_g", "carry_g"})
        return DryShellRule(obj.decimal("sample_g"), obj.decimal("base_shell_g"),
                            obj.decimal("step_g"), obj.decimal("carry_g"))
    if method == ShellRatioRule.METHOD:
        obj.only({"method", "standard_pct", "bands"})
        bands = obj.raw("bands")
        if not isinstance(bands, list):
            raise PriceTableError("grading.bands", "must be a list of bands")
        parsed = []
        for i, item in enumerate(bands):
            band = _Obj(item, f"grading.bands[{i}]", required={"from_pct", "to_pct", "diff"})
            parsed.append(RatioBand(band.decimal("from_pct"), band.decimal("to_pct"),
                                    band.decimal("diff")))
        return ShellRatioRule(obj.decimal("standard_pct"), tuple(parsed))
    raise PriceTableError("grading.method",
                          f"must be {DryShellRule.METHOD!r} or {ShellRatioRule.METHOD!r}")


def _grade_prices(top: _Obj, grading, base: Decimal) -> PerStepPrices | PerGradePrices | None:
    if isinstance(grading, ShellRatioRule):
        if top.has("grade_price"):
            raise PriceTableError("grade_price", "is not used with shell_ratio grading "
                                  "(each band carries its price difference): remove it")
        with exact():
            lowest = base + grading.bands[0].diff
        if lowest <= 0:
            raise PriceTableError("grading.bands[0].diff",
                                  "would price the lowest band at or below zero")
        return None
    if not top.has("grade_price"):
        raise PriceTableError("grade_price", "is required with dry_shell grading")
    obj = _Obj(top.raw("grade_price"), "grade_price", required={"rule"},
               optional={"per_step", "min_grade", "max_grade", "prices"})
    rule = obj.raw("rule")
    if rule == "per_step":
        obj.only({"rule", "per_step", "min_grade", "max_grade"})
        rule_ = PerStepPrices(obj.decimal("per_step"), obj.integer("min_grade"),
                              obj.integer("max_grade"))
        if rule_.per_step < 0:
            raise PriceTableError("grade_price.per_step",
                                  "must not be negative: a better grade never pays less")
        if not -MAX_GRADE <= rule_.min_grade <= 0:
            raise PriceTableError("grade_price.min_grade", f"must be from -{MAX_GRADE} to 0")
        if not 0 <= rule_.max_grade <= MAX_GRADE:
            raise PriceTableError("grade_price.max_grade", f"must be from 0 to {MAX_GRADE}")
        if rule_.price(base, Grade(rule_.min_grade)) <= 0:
            raise PriceTableError("grade_price.min_grade",
                                  "would price the lowest grade at or below zero")
        return rule_
    if rule == "per_grade":
        obj.only({"rule", "prices"})
        return _per_grade(obj, base)
    raise PriceTableError("grade_price.rule", "must be \"per_step\" or \"per_grade\"")


def _per_grade(obj: _Obj, base: Decimal) -> PerGradePrices:
    prices = obj.raw("prices")
    if not isinstance(prices, dict) or not prices:
        raise PriceTableError("grade_price.prices",
                              "must be an object of grade (\"-1\", \"0\", \"1\"...) to price")
    table = _Obj(prices, "grade_price.prices", required=set(), optional=set(prices))
    pairs = []
    for key in prices:
        if not GRADE_KEY_RE.match(key):
            raise PriceTableError(f"grade_price.prices.{key}",
                                  "grades are written as integers: \"-1\", \"0\", \"1\"")
        pairs.append((int(key), table.decimal(key)))
    pairs.sort()
    steps = [g for g, _ in pairs]
    if steps != list(range(steps[0], steps[-1] + 1)) or 0 not in steps:
        raise PriceTableError("grade_price.prices",
                              "must list every grade from the lowest to the highest, grade 0 "
                              "included")
    if dict(pairs)[0] != base:
        raise PriceTableError("grade_price.prices.0", "must equal base_price")
    for (g, low), (_, high) in itertools.pairwise(pairs):
        if high < low:
            raise PriceTableError(f"grade_price.prices.{g + 1}",
                                  f"must not be lower than grade {Grade(g).label}'s price")
    if pairs[0][1] <= 0:
        raise PriceTableError(f"grade_price.prices.{pairs[0][0]}", "must be positive")
    return PerGradePrices(tuple(pairs))


def _deductions(obj: _Obj) -> tuple[DeductionRule, ...]:
    rules = [_rule(obj.raw(m), m) for m in (REELABLE, MOISTURE) if obj.has(m)]
    if obj.has("defects"):
        defects = obj.raw("defects")
        if not isinstance(defects, dict):
            raise PriceTableError("deductions.defects", "must be an object of kind to rule")
        for kind in sorted(defects):
            if not DEFECT_RE.match(kind):
                raise PriceTableError(f"deductions.defects.{kind}",
                                      "defect kinds are lowercase words: perforated, stained...")
            rules.append(_rule(defects[kind], DEFECT_PREFIX + kind))
    return tuple(rules)


def _rule(doc: Any, measure: str) -> DeductionRule:
    obj = _Obj(doc, f"deductions.{measure}", required={"applies_to", "threshold_pct", "rate"},
               optional={"refuse_beyond_pct"})
    targets = {t.value: t for t in Target}
    if obj.raw("applies_to") not in targets:
        raise PriceTableError(f"deductions.{measure}.applies_to", "must be \"mass\" or \"price\"")
    limit = obj.decimal("refuse_beyond_pct") if obj.has("refuse_beyond_pct") else None
    return DeductionRule(measure, targets[obj.raw("applies_to")], obj.decimal("threshold_pct"),
                         obj.decimal("rate"), limit)


class _Obj:
    """One JSON object of the document, read with errors that name the field's path."""

    def __init__(self, doc: Any, path: str, required: set[str],
                 optional: set[str] = frozenset()):
        self.path = path
        if not isinstance(doc, dict):
            raise PriceTableError(path or "(document)", "must be a JSON object")
        self.doc = doc
        for name in sorted(required):
            if name not in doc:
                raise PriceTableError(self._at(name), "is missing")
        self.only(required | optional)

    def only(self, allowed: set[str]) -> None:
        for name in sorted(self.doc):
            if name not in allowed:
                raise PriceTableError(self._at(name), "is not a field here (misspelt or "
                                      "from another grading method?)")

    def _at(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return name in self.doc

    def raw(self, name: str, default: Any = None) -> Any:
        if name not in self.doc and default is None:
            raise PriceTableError(self._at(name), "is missing")
        return self.doc.get(name, default)

    def decimal(self, name: str) -> Decimal:
        value = self.raw(name)
        if not is_decimal_text(value):
            raise PriceTableError(self._at(name), f"must be a decimal string like \"38.50\" "
                                  f"(decimals travel as strings), not {value!r}")
        return Decimal(value)

    def integer(self, name: str) -> int:
        value = self.raw(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise PriceTableError(self._at(name), f"must be a JSON integer, not {value!r}")
        return value

    def name(self, name: str) -> str:
        value = self.raw(name)
        if not isinstance(value, str) or not NAME_RE.match(value):
            raise PriceTableError(self._at(name), "must be 1-64 characters of a-z, 0-9, '.', "
                                  "'_', '-', starting with a letter or digit")
        return value

    def timestamp(self, name: str) -> datetime:
        value = self.raw(name)
        if not isinstance(value, str) or not TIMESTAMP_RE.match(value):
            raise PriceTableError(self._at(name), "must be an RFC 3339 UTC time such as "
                                  "\"2026-05-01T00:00:00Z\"")
        try:
            return datetime.fromisoformat(value[:-1]).replace(tzinfo=timezone.utc)
        except ValueError:
            raise PriceTableError(self._at(name), f"{value!r} is not a real time") from None


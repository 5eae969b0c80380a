"""The pricing record: every input and output of one purchase's pricing, as JSON strings.

The record travels inside the signed `purchase.recorded` event (`body.pricing`). With it and the
price table it names (id, version and the SHA-256 of the table document), anyone (the bank's
integrators, an inspector) can recompute the amount: `recompute(record, table)` rebuilds the lot
from the record's inputs alone and prices it again. Every number is a string, because signed
JSON admits no decimals (docs/events.md, "Numbers").
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from agent.contract.pricing.amount import Lot, Quote, price
from agent.contract.pricing.errors import MeasurementError, PricingRecordError
from agent.contract.pricing.money import text, to_decimal
from agent.contract.pricing.tables import PriceTable

FORMAT = "cocoon-pricing/1"
_INPUTS = ("shell_g", "shell_ratio_pct", "moisture_pct", "reelable_pct")


def pricing_record(quote: Quote) -> dict:
    """The JSON-safe record of a quote (all scalars are strings)."""
    table, lot = quote.table, quote.lot
    inputs: dict[str, Any] = {"net_g": str(lot.net_g)}
    for name in _INPUTS:
        value = getattr(lot, name)
        if value is not None:
            inputs[name] = text(value)
    if lot.defects_pct:
        inputs["defects_pct"] = {k: text(v) for k, v in lot.defects_pct.items()}
    return {
        "format": FORMAT,
        "table": {"id": table.table_id, "version": str(table.version), "season": table.season,
                  "digest": table.digest},
        "method": table.grading.METHOD,
        "inputs": inputs,
        "grade": quote.grade.label,
        "price_unit": table.quote_unit.value,
        "graded_price": text(quote.graded_price),
        "deductions": [
            {"measure": d.measure, "measured_pct": text(d.measured_pct),
             "applies_to": d.applies_to.value, "pct": text(d.pct)}
            for d in quote.deductions
        ],
        "mass_deduct_pct": text(quote.mass_deduct_pct),
        "price_deduct_pct": text(quote.price_deduct_pct),
        "payable_g": text(quote.payable_g),
        "unit_price": text(quote.unit_price),
        "amount": text(quote.amount),
        "currency": table.currency,
        "rounding": table.rounding.value,
    }


def lot_from_record(record: Any) -> Lot:
    """The lot described by a record's inputs (only the inputs; outputs are not trusted)."""
    _check_format(record)
    inputs = record.get("inputs")
    if not isinstance(inputs, dict):
        raise PricingRecordError("pricing record has no inputs object")
    unknown = set(inputs) - {"net_g", "defects_pct", *_INPUTS}
    if unknown:
        raise PricingRecordError(f"pricing record inputs has unknown fields {sorted(unknown)}")
    net = inputs.get("net_g")
    if not isinstance(net, str) or not net.isdigit() or not net.isascii():
        raise PricingRecordError(f"pricing record inputs.net_g must be a string of digits, "
                                 f"not {net!r}")
    values = {name: to_decimal(inputs[name], f"inputs.{name}", PricingRecordError)
              for name in _INPUTS if name in inputs}
    defects = inputs.get("defects_pct", {})
    if not isinstance(defects, dict):
        raise PricingRecordError("pricing record inputs.defects_pct must be an object")
    values["defects_pct"] = {k: to_decimal(v, f"inputs.defects_pct.{k}", PricingRecordError)
                             for k, v in defects.items()}
    try:
        return Lot(net_g=int(net), **values)
    except MeasurementError as exc:
        raise PricingRecordError(f"pricing record inputs are invalid: {exc}") from None


def _check_format(record: Any) -> None:
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise PricingRecordError(f"not a pricing record (format must be {FORMAT!r})")


def check_table(record: Any, table: PriceTable) -> None:
    """PricingRecordError unless the record names exactly this table (id, version, digest)."""
    _check_format(record)
    ref = record.get("table")
    if not isinstance(ref, dict):
        raise PricingRecordError("pricing record names no price table")
    if (ref.get("id"), ref.get("version")) != (table.table_id, str(table.version)):
        raise PricingRecordError(
            f"the record was priced with price table {ref.get('id')} v{ref.get('version')}, "
            f"not with {table.table_id} v{table.version}: fetch that version")
    if ref.get("digest") != table.digest:
        raise PricingRecordError(
            f"price table {table.table_id} v{table.version} differs from the one the record "
            f"names (digest {ref.get('digest')}, this one {table.digest}): the table was "
            "altered or another document reuses its version")


def table_ref(record: Any) -> tuple[str, int]:
    """The (id, version) of the price table a record names, to fetch it from a store."""
    _check_format(record)
    ref = record.get("table")
    version = ref.get("version") if isinstance(ref, dict) else None
    if not isinstance(version, str) or not version.isascii() or not version.isdigit():
        raise PricingRecordError("pricing record names no price table (table.version)")
    return str(ref.get("id")), int(version)


def recompute(record: Any, table: PriceTable) -> Decimal:
    """The amount (Decimal, yuan) recomputed from the record's inputs and the table it names."""
    check_table(record, table)
    return price(table, lot_from_record(record)).amount


def verify_record(record: Any, table: PriceTable) -> None:
    """PricingRecordError unless pricing the record's inputs again gives the same record."""
    check_table(record, table)
    check_quote(record, price(table, lot_from_record(record)))


def check_quote(record: Any, quote: Quote) -> None:
    """PricingRecordError unless `record` is the record of `quote` (its recomputation)."""
    again = pricing_record(quote)
    differing = sorted(k for k in set(again) | set(record) if again.get(k) != record.get(k))
    if differing:
        raise PricingRecordError(f"pricing record does not match its recomputation in "
                                 f"{', '.join(differing)}")

"""Price tables, pricing, rounding, the pricing record and the price table store.

The example tables, the worked example record and the integrators' recompute procedure are read
from docs/pricing.md, so the documentation is tested with the code.
"""

import copy
import json
import os
import re
import threading
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.contract.commands import BACKEND, make_command
from agent.contract.envelope import canonical, parse_json_object, sha256_hex
from agent.contract.pricing.amount import Lot, price
from agent.contract.pricing.errors import (
    MeasurementError,
    PriceStoreError,
    PriceTableError,
    PricingRecordError,
    PurchaseRefused,
    TableVersionRefused,
    UnknownPriceTable,
)
from agent.contract.pricing.grading import Grade
from agent.contract.pricing.money import Rounding
from agent.contract.pricing.record import pricing_record, recompute, table_ref, verify_record
from agent.contract.pricing.tables import QuoteUnit, parse_price_table
from agent.contract.signing import Ed25519Signer, Verifier
from agent.errors import CocoonError
from agent.spine.dispatcher import Dispatcher
from agent.station import price_store
from agent.station.price_store import PriceTableRefused, PriceTableStore, make_price_table_handler

D = Decimal
DOCS = Path(__file__).resolve().parent.parent / "docs" / "pricing.md"
DELETE = object()


def doc_blocks(kind: str) -> list[str]:
    return re.findall(r"```" + re.escape(kind) + r"\n(.*?)```", DOCS.read_text(), re.S)


PER_KG_DOC, PER_50KG_DOC = (json.loads(b) for b in doc_blocks("json price-table"))
(WORKED_RECORD_TEXT,) = doc_blocks("json pricing-record")
(RECOMPUTE_SOURCE,) = doc_blocks("python recompute")
_namespace: dict = {}
exec(RECOMPUTE_SOURCE, _namespace)  # the integrators' reference procedure, as documented
doc_recompute = _namespace["recompute_amount"]


def edit(base: dict, **changes) -> dict:
    """A deep copy of `base` with dotted paths (written with __) set, or removed with DELETE."""
    out = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = out
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return out


PER_KG = parse_price_table(PER_KG_DOC)
PER_50KG = parse_price_table(PER_50KG_DOC)
FLAT_DOC = edit(PER_KG_DOC, deductions={})  # no deductions: the amount is net x price


def kg_lot(net_g=52340, shell_g="9.35", moisture="15", reelable="100", **defects):
    kinds = {"perforated": "0", "stained": "0", "thin": "0", "mouldy": "0", **defects}
    return Lot(net_g, shell_g=shell_g, moisture_pct=moisture, reelable_pct=reelable,
               defects_pct=kinds)


# -- the documented examples ------------------------------------------------------------


def test_documented_tables_parse():
    assert PER_KG.quote_unit is QuoteUnit.PER_KG and PER_KG.version == 3
    assert PER_50KG.quote_unit is QuoteUnit.PER_50KG and PER_50KG.rounding is Rounding.HALF_EVEN
    assert PER_KG.digest == sha256_hex(canonical(PER_KG_DOC))
    assert PER_KG.defect_kinds() == ("mouldy", "perforated", "stained", "thin")


def test_documented_worked_example_is_what_the_agent_computes():
    quote = price(PER_KG, kg_lot(shell_g="9.35", moisture="16.2", reelable="96.5",
                                 perforated="1.0", stained="2.4", thin="0", mouldy="0.5"))
    assert quote.grade == Grade(1)
    assert quote.unit_price == D("39.0249") and quote.amount == D("1924.09")
    assert pricing_record(quote) == json.loads(WORKED_RECORD_TEXT)


def test_documented_per_50kg_example():
    quote = price(PER_50KG, Lot(48765, shell_ratio_pct="21.7", moisture_pct="15.9",
                                reelable_pct="97.2"))
    assert quote.grade.label == "+1" and quote.graded_price == D("1941.00")
    assert quote.unit_price == D("38.1212") and quote.amount == D("1806.93")


# -- parsing errors name the field ------------------------------------------------------


@pytest.mark.parametrize("changes,field", [
    ({"base_price": 38}, "base_price"),
    ({"base_price": "38.5.0"}, "base_price"),
    ({"base_price": "3.85E1"}, "base_price"),
    ({"base_price": "0"}, "base_price"),
    ({"version": DELETE}, "version"),
    ({"version": 0}, "version"),
    ({"version": "3"}, "version"),
    ({"version": True}, "version"),
    ({"id": "Bad Id"}, "id"),
    ({"season": ""}, "season"),
    ({"format": "price-table/0"}, "format"),
    ({"currency": "USD"}, "currency"),
    ({"price_unit": "yuan/jin"}, "price_unit"),
    ({"valid_from": "2026-05-01"}, "valid_from"),
    ({"valid_from": "2026-02-30T00:00:00Z"}, "valid_from"),
    ({"valid_until": "2026-04-01T00:00:00Z"}, "valid_until"),
    ({"rounding": "ROUND_UP"}, "rounding"),
    ({"colour": "red"}, "colour"),
    ({"grading__method": "by_eye"}, "grading.method"),
    ({"grading__step_g": DELETE}, "grading.step_g"),
    ({"grading__step_g": "-0.2"}, "grading.step_g"),
    ({"grading__carry_g": "0.3"}, "grading.carry_g"),
    ({"grading__bands": []}, "grading.bands"),
    ({"grade_price": DELETE}, "grade_price"),
    ({"grade_price__rule": "per_kilo"}, "grade_price.rule"),
    ({"grade_price__per_step": "-0.80"}, "grade_price.per_step"),
    ({"grade_price__min_grade": 1}, "grade_price.min_grade"),
    ({"grade_price__min_grade": -60}, "grade_price.min_grade"),
    ({"grade_price__max_grade": "10"}, "grade_price.max_grade"),
    ({"grade_price__max_grade": 10**20}, "grade_price.max_grade"),
    ({"deductions": DELETE}, "deductions"),
    ({"deductions__moist": {}}, "deductions.moist"),
    ({"deductions__moisture__rate": "fast"}, "deductions.moisture.rate"),
    ({"deductions__moisture__rate": "-1"}, "deductions.moisture.rate"),
    ({"deductions__moisture__applies_to": "weight"}, "deductions.moisture.applies_to"),
    ({"deductions__moisture__refuse_beyond_pct": "10"}, "deductions.moisture.refuse_beyond_pct"),
    ({"deductions__reelable__refuse_beyond_pct": "101"},
     "deductions.reelable.refuse_beyond_pct"),
    ({"deductions__defects__Mouldy": {}}, "deductions.defects.Mouldy"),
    ({"deductions__defects__mouldy__threshold_pct": "101"},
     "deductions.defects.mouldy.threshold_pct"),
    ({"deductions__defects__thin__rate": DELETE}, "deductions.defects.thin.rate"),
])
def test_parse_errors_name_the_field(changes, field):
    with pytest.raises(PriceTableError) as info:
        parse_price_table(edit(PER_KG_DOC, **changes))
    assert info.value.field == field
    assert f"price table field {field}:" in str(info.value)
    assert isinstance(info.value, CocoonError)


@pytest.mark.parametrize("prices,field", [
    ({"-1": "37.60", "1": "39.40"}, "grade_price.prices"),  # no grade 0
    ({"-1": "37.60", "0": "38.50", "2": "40.00"}, "grade_price.prices"),  # a gap
    ({"0": "38.40", "1": "39.40"}, "grade_price.prices.0"),  # grade 0 is not the base price
    ({"0": "38.50", "1": "38.00"}, "grade_price.prices.1"),  # a better grade pays less
    ({"+1": "39.40", "0": "38.50"}, "grade_price.prices.+1"),
    ({"0": 38.5}, "grade_price.prices.0"),
])
def test_per_grade_price_errors(prices, field):
    with pytest.raises(PriceTableError) as info:
        parse_price_table(edit(PER_KG_DOC, grade_price={"rule": "per_grade", "prices": prices}))
    assert info.value.field == field


@pytest.mark.parametrize("changes,field", [
    ({"grade_price": {"rule": "per_step", "per_step": "1", "min_grade": 0, "max_grade": 0}},
     "grade_price"),
    ({"grading__bands__0__diff": "-1925.00"}, "grading.bands[0].diff"),
    ({"grading__bands__1__from_pct": "19.6"}, "grading.bands[1].from_pct"),
    ({"grading__standard_pct": "21.2"}, "grading.standard_pct"),
    ({"grading__sample_g": "50"}, "grading.sample_g"),
    ({"grading__bands__0__from_pct": "-1"}, "grading.bands[0].from_pct"),
    ({"grading__bands__8__to_pct": "100.5"}, "grading.bands[8].to_pct"),
])
def test_shell_ratio_table_errors(changes, field):
    with pytest.raises(PriceTableError) as info:
        parse_price_table(edit(PER_50KG_DOC, **changes))
    assert info.value.field == field


def test_a_document_that_is_not_an_object_is_refused():
    with pytest.raises(PriceTableError, match="JSON object"):
        parse_price_table(["not", "a", "table"])


# -- prices and grades ------------------------------------------------------------------


def test_base_grade_ideal_lot_is_net_times_base_price():
    quote = price(PER_KG, kg_lot(net_g=52340, shell_g="9.2"))
    assert quote.grade.label == "0" and quote.unit_price == D("38.5000")
    assert quote.payable_g == 52340 and quote.amount == D("2015.09")
    assert all(d.pct == 0 for d in quote.deductions) and len(quote.deductions) == 6


@pytest.mark.parametrize("shell_g,unit_price", [
    ("9.29", "38.5000"), ("9.3", "39.3000"), ("9.5", "40.1000"), ("9.1", "37.7000"),
    ("7.6", "32.1000"), ("11.29", "46.5000"),
])
def test_per_step_prices(shell_g, unit_price):
    assert price(PER_KG, kg_lot(shell_g=shell_g)).unit_price == D(unit_price)


def test_per_grade_prices():
    table = parse_price_table(edit(PER_KG_DOC, grade_price={
        "rule": "per_grade", "prices": {"-1": "37.60", "0": "38.50", "1": "39.40", "2": "40.40"}}))
    assert price(table, kg_lot(shell_g="9.55")).unit_price == D("40.4000")
    assert price(table, kg_lot(shell_g="9.05")).unit_price == D("37.6000")
    with pytest.raises(PurchaseRefused, match=r"grade \+3 is outside .* \(-1 to \+2\)"):
        price(table, kg_lot(shell_g="9.7"))


def test_per_50kg_table_converts_exactly_and_matches_the_per_kg_table():
    per_50 = parse_price_table(edit(PER_KG_DOC, price_unit="yuan/50kg", base_price="1925.00",
                                    grade_price__per_step="40.00"))
    for shell in ("9.2", "9.35", "8.8", "10.0"):
        for net in (1, 999, 52340, 1234567):
            lot = kg_lot(net_g=net, shell_g=shell, moisture="17.3", reelable="93.1", stained="4")
            assert price(per_50, lot).amount == price(PER_KG, lot).amount
            assert price(per_50, lot).unit_price == price(PER_KG, lot).unit_price


@pytest.mark.parametrize("base_50,per_kg", [
    ("1925.00", "38.5000"), ("1925.01", "38.5002"), ("1925.03", "38.5006"),
    ("1925.49", "38.5098"), ("0.01", "0.0002"),
])
def test_fen_prices_per_50kg_convert_without_rounding(base_50, per_kg):
    flat = edit(FLAT_DOC, price_unit="yuan/50kg", base_price=base_50, grade_price__per_step="0",
                grade_price__min_grade=0)
    for mode in Rounding:
        table = parse_price_table(edit(flat, rounding=mode.value))
        assert price(table, Lot(52340, shell_g="9.2")).unit_price == D(per_kg)


# -- rounding ---------------------------------------------------------------------------


@pytest.mark.parametrize("net_g,exact,half_up,half_even,down", [
    (52330, "2014.705", "2014.71", "2014.70", "2014.70"),  # tie, even neighbour below
    (52350, "2015.475", "2015.48", "2015.48", "2015.47"),  # tie, even neighbour above
    (52329, "2014.6665", "2014.67", "2014.67", "2014.66"),  # just above a half fen
    (52331, "2014.7435", "2014.74", "2014.74", "2014.74"),  # just below a half fen
    (10, "0.385", "0.39", "0.38", "0.38"),
    (52340, "2015.09", "2015.09", "2015.09", "2015.09"),  # exact: nothing to round
])
def test_amount_rounding_modes_at_half_fen(net_g, exact, half_up, half_even, down):
    assert D(net_g) * D("38.5") / 1000 == D(exact)
    for mode, expected in ((Rounding.HALF_UP, half_up), (Rounding.HALF_EVEN, half_even),
                           (Rounding.DOWN, down)):
        table = parse_price_table(edit(FLAT_DOC, rounding=mode.value))
        amount = price(table, Lot(net_g, shell_g="9.2")).amount
        assert amount == D(expected) and amount.as_tuple().exponent == -2


def test_default_rounding_is_half_up():
    table = parse_price_table(edit(FLAT_DOC, rounding=DELETE))
    assert table.rounding is Rounding.HALF_UP
    assert price(table, Lot(52330, shell_g="9.2")).amount == D("2014.71")


@pytest.mark.parametrize("mode,unit_price", [
    ("ROUND_HALF_UP", "38.4885"), ("ROUND_HALF_EVEN", "38.4884"), ("ROUND_DOWN", "38.4884")])
def test_unit_price_rounding_at_half_of_the_last_place(mode, unit_price):
    # 38.50 less a 0.03 % price deduction is 38.48845 yuan/kg, a tie at 0.0001.
    table = parse_price_table(edit(PER_KG_DOC, rounding=mode))
    quote = price(table, kg_lot(shell_g="9.2", perforated="0.06"))
    assert quote.price_deduct_pct == D("0.03")
    assert quote.unit_price == D(unit_price)


# -- deductions and refusals ------------------------------------------------------------


def test_moisture_deduction_and_limit():
    assert price(PER_KG, kg_lot(moisture="15")).mass_deduct_pct == 0
    assert price(PER_KG, kg_lot(moisture="14")).mass_deduct_pct == 0
    assert price(PER_KG, kg_lot(moisture="17")).mass_deduct_pct == D("3")
    assert price(PER_KG, kg_lot(moisture="21")).mass_deduct_pct == D("9")  # the limit is bought
    with pytest.raises(PurchaseRefused, match=r"moisture 21.01 % is above the limit of 21 %"):
        price(PER_KG, kg_lot(moisture="21.01"))


def test_reelable_ratio_pays_the_reelable_mass():
    quote = price(PER_KG, kg_lot(net_g=50000, shell_g="9.2", reelable="93.5"))
    assert quote.payable_g == D("46750") and quote.amount == D("1799.88")
    assert price(PER_KG, kg_lot(reelable="70")).mass_deduct_pct == D("30")
    with pytest.raises(PurchaseRefused, match="reelable-cocoon ratio 69.9 % is below the minimum"):
        price(PER_KG, kg_lot(reelable="69.9"))


def test_defects_deduct_mass_or_price_per_rule():
    quote = price(PER_KG, kg_lot(shell_g="9.2", perforated="2", stained="3", thin="1",
                                 mouldy="4"))
    by = {d.measure: d.pct for d in quote.deductions}
    assert by["defects.perforated"] == D("1.0") and by["defects.stained"] == D("0.5")
    assert by["defects.thin"] == D("0.3") and by["defects.mouldy"] == D("4")
    assert quote.price_deduct_pct == D("1.8") and quote.mass_deduct_pct == D("4")
    with pytest.raises(PurchaseRefused, match="mouldy cocoons 5.5 % is above the limit of 5 %"):
        price(PER_KG, kg_lot(mouldy="5.5"))


def test_deductions_taking_everything_are_refused():
    greedy = parse_price_table(edit(PER_KG_DOC, deductions__moisture__rate="20"))
    with pytest.raises(PurchaseRefused, match="deductions from the mass add up to 100"):
        price(greedy, kg_lot(moisture="20"))


@pytest.mark.parametrize("make,error,words", [
    (lambda: kg_lot(shell_g=None), MeasurementError, "missing sample"),
    (lambda: kg_lot(net_g=-5), MeasurementError, "net weight -5 g is not positive"),
    (lambda: kg_lot(net_g=0), MeasurementError, "not positive"),
    (lambda: kg_lot(net_g=52.34), MeasurementError, "whole grams"),
    (lambda: kg_lot(net_g=True), MeasurementError, "whole grams"),
    (lambda: kg_lot(net_g=10**9 + 1), MeasurementError, "beyond any scale"),
    (lambda: kg_lot(shell_g="-9.2"), MeasurementError, "negative"),
    (lambda: kg_lot(moisture="-1"), MeasurementError, "negative"),
    (lambda: kg_lot(moisture=15.5), MeasurementError, "float"),
    (lambda: kg_lot(moisture=None), MeasurementError, "moisture was not measured"),
    (lambda: kg_lot(reelable="101"), MeasurementError, "not a percentage"),
    (lambda: kg_lot(dusty="1"), MeasurementError, "unknown defect kind dusty"),
    (lambda: Lot(52340, shell_ratio_pct="21"), MeasurementError, "grades by dry shell"),
    (lambda: kg_lot(shell_g="7.5"), PurchaseRefused, r"grade -9 is outside .* \(-8 to \+10\)"),
    (lambda: kg_lot(shell_g="11.3"), PurchaseRefused, r"grade \+11 is outside"),
    (lambda: kg_lot(moisture="30"), PurchaseRefused, "moisture 30 % is above the limit"),
])
def test_refusals_say_why(make, error, words):
    with pytest.raises(error, match=words) as info:
        price(PER_KG, make())
    assert isinstance(info.value, CocoonError)


def test_shell_ratio_table_wants_a_ratio():
    with pytest.raises(MeasurementError, match="missing sample: this table grades by shell"):
        price(PER_50KG, Lot(1000, moisture_pct="15", reelable_pct="100"))
    with pytest.raises(MeasurementError, match="grades by shell ratio"):
        price(PER_50KG, Lot(1000, shell_g="9.2", moisture_pct="15", reelable_pct="100"))


# -- the pricing record -----------------------------------------------------------------


def leaves(obj):
    if isinstance(obj, dict):
        for value in obj.values():
            yield from leaves(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from leaves(value)
    else:
        yield obj


def test_record_is_json_safe_strings_and_round_trips():
    quote = price(PER_50KG, Lot(48765, shell_ratio_pct=D("21.70"), moisture_pct=D("15.9"),
                                reelable_pct=D("97.2")))
    record = pricing_record(quote)
    assert all(isinstance(v, str) for v in leaves(record))
    canonical(record)  # no floats, nothing the signed event could not carry
    wire = json.loads(json.dumps(record))
    assert wire["inputs"]["shell_ratio_pct"] == "21.70"
    assert recompute(wire, PER_50KG) == quote.amount
    verify_record(wire, PER_50KG)


def test_tampered_record_is_caught():
    record = pricing_record(price(PER_KG, kg_lot(moisture="16")))
    forged = {**record, "amount": "9999.99"}
    assert recompute(forged, PER_KG) == D(record["amount"])  # recomputed from inputs only
    with pytest.raises(PricingRecordError, match="amount"):
        verify_record(forged, PER_KG)


def test_record_must_name_the_table_used():
    record = pricing_record(price(PER_KG, kg_lot()))
    newer = parse_price_table(edit(PER_KG_DOC, version=4))
    with pytest.raises(PricingRecordError, match="priced with price table .* v3, not .* v4"):
        recompute(record, newer)
    altered = {**record, "table": {**record["table"], "digest": "0" * 64}}
    with pytest.raises(PricingRecordError, match="digest"):
        recompute(altered, PER_KG)
    with pytest.raises(PricingRecordError, match="not a pricing record"):
        recompute({"inputs": {}}, PER_KG)
    bad_input = {**record, "inputs": {**record["inputs"], "net_g": "-5"}}
    with pytest.raises(PricingRecordError, match="net_g"):
        recompute(bad_input, PER_KG)


# -- properties -------------------------------------------------------------------------

TABLES = {(doc["id"], mode): (parse_price_table(edit(doc, rounding=mode.value)),
                              edit(doc, rounding=mode.value))
          for doc in (PER_KG_DOC, PER_50KG_DOC) for mode in Rounding}


def pct(low, high):
    return st.decimals(min_value=D(low), max_value=D(high), places=2)


@st.composite
def priced_lots(draw):
    doc_id = draw(st.sampled_from([PER_KG_DOC["id"], PER_50KG_DOC["id"]]))
    table, doc = TABLES[(doc_id, draw(st.sampled_from(list(Rounding))))]
    net_g = draw(st.integers(min_value=1, max_value=10_000_000))
    if doc_id == PER_KG_DOC["id"]:
        measures = {
            "shell_g": draw(st.decimals(min_value=D("7.51"), max_value=D("11.29"), places=2)),
            "moisture_pct": draw(pct("0", "21")), "reelable_pct": draw(pct("70", "100")),
            "defects_pct": {k: draw(pct("0", "5")) for k in table.defect_kinds()},
        }
    else:
        measures = {"shell_ratio_pct": draw(pct("19", "29.99")),
                    "moisture_pct": draw(pct("0", "21")), "reelable_pct": draw(pct("80", "100"))}
    return table, doc, net_g, measures


@settings(max_examples=150, deadline=None)
@given(priced_lots())
def test_amount_is_exact_to_the_fen_and_recomputes(case):
    table, doc, net_g, measures = case
    quote = price(table, Lot(net_g, **measures))
    assert isinstance(quote.amount, Decimal) and quote.amount.as_tuple().exponent == -2
    assert quote.amount >= 0
    assert isinstance(quote.unit_price, Decimal) and quote.unit_price.as_tuple().exponent == -4
    record = json.loads(json.dumps(pricing_record(quote)))
    assert recompute(record, table) == quote.amount
    verify_record(record, table)
    assert doc_recompute(record, doc) == quote.amount  # the documented procedure agrees


@settings(max_examples=150, deadline=None)
@given(priced_lots(), st.integers(min_value=1, max_value=10_000_000))
def test_amount_is_monotonic_in_net_weight(case, other_net):
    table, _, net_g, measures = case
    low, high = sorted((net_g, other_net))
    assert price(table, Lot(low, **measures)).amount <= price(table, Lot(high, **measures)).amount


# -- the store and the price_table.set handler ------------------------------------------

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=timezone.utc)
BACKEND_KEY = Ed25519Signer.generate()


def Store(path, device="dev-a"):
    return PriceTableStore(path, Verifier.from_pem(BACKEND_KEY.public_key_pem()), device)


def signed(doc, device="dev-a", signer=BACKEND_KEY):
    """The table as the backend sends it: a signed price_table.set command."""
    return make_command(device, "price_table.set", doc, signer, now=NOW)


def test_store_installs_persists_and_finds_tables(tmp_path):
    store = Store(tmp_path)
    result = store.install(signed(PER_KG_DOC))
    assert result == {"table": PER_KG.table_id, "version": 3, "season": "2026-spring",
                      "digest": PER_KG.digest, "previous_version": None}
    later = signed(edit(PER_KG_DOC, version=4, base_price="39.00"))
    assert store.install(later)["previous_version"] == 3
    reopened = Store(tmp_path)
    assert reopened.current("2026-spring").version == 4
    assert reopened.get(PER_KG.table_id, 3) == PER_KG  # old versions stay, for recomputation
    assert [t.version for t in reopened.tables()] == [3, 4]
    with pytest.raises(UnknownPriceTable, match=r"no price table sc-nanchong-2026-spring v9"):
        reopened.get(PER_KG.table_id, 9)
    with pytest.raises(UnknownPriceTable, match="season 2027-spring"):
        reopened.current("2027-spring")


def test_a_record_finds_its_table_in_the_store_or_says_it_is_unknown(tmp_path):
    store = Store(tmp_path)
    store.install(signed(PER_KG_DOC))
    record = pricing_record(price(PER_KG, kg_lot(moisture="18")))
    assert table_ref(record) == (PER_KG.table_id, 3)
    assert recompute(record, store.get(*table_ref(record))) == D(record["amount"])
    later = {**record, "table": {**record["table"], "version": "7"}}
    with pytest.raises(UnknownPriceTable, match="no price table sc-nanchong-2026-spring v7 on "
                                                "this station; the backend must send it"):
        store.get(*table_ref(later))
    with pytest.raises(PricingRecordError, match="table.version"):
        table_ref({**record, "table": {"id": "x", "version": 3}})


def test_the_store_keeps_what_it_checked(tmp_path):
    doc = edit(PER_KG_DOC)
    store = Store(tmp_path)
    store.install(signed(doc))
    doc["base_price"] = "99.00"  # the caller's dict changes after the install
    assert Store(tmp_path).current("2026-spring") == PER_KG


@pytest.mark.parametrize("version,words", [(3, "already installed"),
                                           (2, "older than the current version 3")])
def test_store_refuses_versions_that_do_not_advance_the_season(tmp_path, version, words):
    store = Store(tmp_path)
    store.install(signed(PER_KG_DOC))
    before = (tmp_path / price_store.FILE_NAME).read_bytes()
    with pytest.raises(TableVersionRefused, match=words):
        store.install(signed(edit(PER_KG_DOC, version=version, base_price="45.00")))
    assert (tmp_path / price_store.FILE_NAME).read_bytes() == before
    assert store.current("2026-spring").base_price == D("38.50")


def test_seasons_are_versioned_independently(tmp_path):
    store = Store(tmp_path)
    store.install(signed(PER_KG_DOC))  # 2026-spring v3
    store.install(signed(PER_50KG_DOC))  # 2026-autumn v1: a lower number, another season
    with pytest.raises(TableVersionRefused, match="an id and version must name one table"):
        store.install(signed(edit(PER_KG_DOC, season="2027-spring")))


def test_invalid_table_is_refused_and_nothing_is_written(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(PriceTableError, match="currency"):
        store.install(signed(edit(PER_KG_DOC, currency="X")))
    assert not (tmp_path / price_store.FILE_NAME).exists() and store.tables() == []


def test_table_in_force(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(UnknownPriceTable, match="no price table is in force"):
        store.in_force(NOW)
    store.install(signed(PER_KG_DOC))
    # v4 is published ahead of its validity: v3 keeps pricing until then
    store.install(signed(edit(PER_KG_DOC, version=4, valid_from="2026-06-15T00:00:00Z")))
    assert store.in_force(NOW).version == 3
    assert store.in_force(datetime(2026, 6, 20, tzinfo=timezone.utc)).version == 4
    store.install(signed(PER_50KG_DOC))
    assert store.in_force(datetime(2026, 9, 1, tzinfo=timezone.utc)).season == "2026-autumn"
    with pytest.raises(UnknownPriceTable):
        store.in_force(datetime(2026, 7, 10, tzinfo=timezone.utc))


def test_write_order_is_temp_fsync_rename_fsync_dir(tmp_path, monkeypatch):
    store = Store(tmp_path)
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (
        calls.append(("replace", Path(a).name.startswith(".price_tables."), Path(b).name)),
        real_replace(a, b))[1])
    monkeypatch.setattr(price_store, "fsync_dir", lambda path: calls.append("fsync_dir"))
    store.install(signed(PER_KG_DOC))
    assert calls == ["fsync", ("replace", True, price_store.FILE_NAME), "fsync_dir"]


def test_a_crash_before_the_rename_leaves_the_old_tables(tmp_path, monkeypatch):
    store = Store(tmp_path)
    store.install(signed(PER_KG_DOC))
    path = tmp_path / price_store.FILE_NAME
    before = path.read_bytes()

    def power_cut(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(PriceStoreError, match="previous tables stay in force"):
        store.install(signed(edit(PER_KG_DOC, version=4)))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [price_store.FILE_NAME]
    assert store.current("2026-spring").version == 3
    assert store.install(signed(edit(PER_KG_DOC, version=4)))["version"] == 4  # and it recovers


def test_a_temp_file_left_by_a_power_cut_is_ignored_and_removed(tmp_path):
    Store(tmp_path).install(signed(PER_KG_DOC))
    stale = tmp_path / ".price_tables.x1y2z3.tmp"
    stale.write_bytes(b'{"format": "cocoon-price-tables/1", "tables": [{"format": "coc')
    store = Store(tmp_path)
    assert not stale.exists()
    assert [t.version for t in store.tables()] == [3]


def test_a_damaged_store_file_is_reported_not_wiped(tmp_path):
    (tmp_path / price_store.FILE_NAME).write_text('{"format": "cocoon-price-tables/2", "tab')
    store = Store(tmp_path)                  # the station starts, and says it cannot price
    assert "unreadable" in store.problem
    with pytest.raises(PriceTableRefused, match="cannot price until the backend sends"):
        store.in_force(NOW)
    assert (tmp_path / price_store.FILE_NAME).read_text().endswith('"tab')


# -- guarded at every use: the signature is checked over the stored bytes -------------------


def test_a_table_edited_on_disk_is_refused_at_its_next_use(tmp_path):
    """Editing base_price in the stored file changed the price of the next sale; now the
    table fails its signature check when the sale asks for it, and nothing is priced."""
    store = Store(tmp_path)
    store.install(signed(PER_KG_DOC))
    assert store.in_force(NOW).base_price == D("38.50")
    path = tmp_path / price_store.FILE_NAME
    path.write_text(path.read_text().replace('"38.50"', '"30.00"'))
    with pytest.raises(PriceTableRefused, match="fails its signature check.*altered"):
        store.in_force(NOW)
    with pytest.raises(PriceTableRefused):
        Store(tmp_path).tables()
    assert "sc-nanchong-2026-spring v3" in store.problem
    # The backend sends the tables again: the altered one is left out (a copy kept aside).
    store.install(signed(edit(PER_KG_DOC, version=4)))
    assert [t.version for t in store.tables()] == [4] and store.problem == ""
    assert len(list(tmp_path.glob(price_store.FILE_NAME + ".refused-*"))) == 1


@pytest.mark.parametrize("case, words", [
    ("legacy", "stored by an earlier release, without their signature"),
    ("other device", "signed for device 'dev-b'"),
    ("other key", "fails its signature check"),
])
def test_tables_without_a_valid_signature_for_this_station_are_refused(tmp_path, case, words):
    path = tmp_path / price_store.FILE_NAME
    if case == "legacy":
        path.write_text(json.dumps({"format": "cocoon-price-tables/1", "tables": [PER_KG_DOC]}))
    else:
        entry = signed(PER_KG_DOC, device="dev-b") if case == "other device" else \
            signed(PER_KG_DOC, signer=Ed25519Signer.generate())
        path.write_text(json.dumps({"format": price_store.FILE_FORMAT, "tables": [entry]}))
    with pytest.raises(PriceTableRefused, match=words):
        Store(tmp_path).in_force(NOW)


def test_without_the_backends_key_no_table_is_trusted(tmp_path):
    Store(tmp_path).install(signed(PER_KG_DOC))
    with pytest.raises(PriceTableRefused, match="no backend public key"):
        PriceTableStore(tmp_path, None, "dev-a").in_force(NOW)


def test_readers_never_see_a_partial_file(tmp_path):
    store = Store(tmp_path)
    store.install(signed(PER_KG_DOC))
    path = tmp_path / price_store.FILE_NAME
    seen, errors, done = [], [], threading.Event()

    def reader():
        while not done.is_set():
            try:
                seen.append(len(parse_json_object(path.read_bytes())["tables"]))
            except Exception as exc:  # any partial file would land here
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version in range(4, 34):
            store.install(signed(edit(PER_KG_DOC, version=version)))
    finally:
        done.set()
        thread.join()
    assert not errors
    assert seen == sorted(seen)  # never a partial file, never an older one after a newer
    assert len(parse_json_object(path.read_bytes())["tables"]) == 31


def recorded(outbox):
    return [(e["type"], e["body"]) for e in
            (parse_json_object(s.payload) for s in outbox.pending(1000))]


def test_price_table_set_through_the_dispatcher(make_outbox, tmp_path):
    backend = Ed25519Signer.generate()
    outbox = make_outbox()
    dispatcher = Dispatcher("dev-a", outbox, {BACKEND: Verifier.from_pem(
        backend.public_key_pem())}, now=lambda: NOW)
    store = PriceTableStore(tmp_path / "prices", Verifier.from_pem(backend.public_key_pem()),
                            "dev-a")
    dispatcher.register("price_table.set", make_price_table_handler(store))

    send = make_command("dev-a", "price_table.set", PER_KG_DOC, backend, now=NOW)
    assert dispatcher.handle(json.dumps(send).encode()) is not None
    stale = make_command("dev-a", "price_table.set", edit(PER_KG_DOC, version=2), backend,
                         now=NOW)
    dispatcher.handle(json.dumps(stale).encode())
    broken = make_command("dev-a", "price_table.set", edit(PER_KG_DOC, version=5, currency="X"),
                          backend, now=NOW)
    dispatcher.handle(json.dumps(broken).encode())

    events = recorded(outbox)
    assert [kind for kind, _ in events] == ["command.accepted", "command.done",
                                            "command.accepted", "command.failed",
                                            "command.accepted", "command.failed"]
    assert events[1][1]["result"] == {"table": PER_KG.table_id, "version": 3,
                                      "season": "2026-spring", "digest": PER_KG.digest,
                                      "previous_version": None}
    assert "older than the current version 3" in events[3][1]["reason"]
    assert "price table field currency" in events[5][1]["reason"]
    assert PriceTableStore(tmp_path / "prices", Verifier.from_pem(backend.public_key_pem()),
                           "dev-a").current("2026-spring") == PER_KG

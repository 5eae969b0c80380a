"""The bank's recomputation of a purchase from the event alone (ingest/recompute.py), with the
station's own pricing code and the example table: what matches, and every way it may not."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

from agent.contract.pricing.amount import Lot, price
from agent.contract.pricing.record import pricing_record
from agent.contract.pricing.tables import parse_price_table
from ingest.recompute import MATCH, MISMATCH, TABLE_UNKNOWN, UNREADABLE, recompute_purchase

DOC = json.loads((Path(__file__).resolve().parents[1] / "config" /
                  "price-table.example.json").read_text())
BANK = parse_price_table(DOC)
LOT = Lot(net_g=51_800, shell_g=Decimal("9.35"), moisture_pct=Decimal("18"),
          reelable_pct=Decimal("100"),
          defects_pct={"perforated": "0", "stained": "1", "thin": "0", "mouldy": "0"})


def body(table=BANK, **changes) -> dict:
    quote = price(table, LOT)
    out = {"scale": {"id": "bench-1", "gross_g": "52000", "tare_g": "200", "net_g": "51800"},
           "grade": quote.grade.label, "unit_price": str(quote.unit_price),
           "amount": str(quote.amount), "currency": "CNY", "pricing": pricing_record(quote)}
    out.update(changes)
    return out


def bank(table_id: str, version: int):
    return BANK if (table_id, version) == (BANK.table_id, BANK.version) else None


def test_an_honest_purchase_matches():
    got = recompute_purchase(body(), bank)
    assert (got.result, got.amount, got.payable) == (MATCH, body()["amount"], True)


def test_an_amount_the_table_does_not_give_is_a_mismatch():
    event = body()
    event["amount"] = str(Decimal(event["amount"]) + Decimal("0.01"))
    event["pricing"]["amount"] = event["amount"]
    got = recompute_purchase(event, bank)
    assert got.result == MISMATCH and not got.payable
    assert got.amount == body()["amount"] and "amount" in got.reason


def test_a_device_pricing_with_an_altered_table_is_a_mismatch():
    altered = parse_price_table({**copy.deepcopy(DOC), "base_price": "45.00"})
    got = recompute_purchase(body(altered), bank)
    assert got.result == MISMATCH and "is not the bank's" in got.reason


def test_weights_that_do_not_add_up_are_a_mismatch():
    event = body()
    event["scale"] = {**event["scale"], "gross_g": "53000"}
    got = recompute_purchase(event, bank)
    assert got.result == MISMATCH and "is not tare 200 g + net 51800 g" in got.reason


def test_a_table_the_bank_does_not_hold_and_a_broken_record_are_held():
    assert recompute_purchase(body(), lambda i, v: None).result == TABLE_UNKNOWN
    assert recompute_purchase(body(pricing={"format": "x"}), bank).result == UNREADABLE
    assert recompute_purchase({}, bank).result == UNREADABLE

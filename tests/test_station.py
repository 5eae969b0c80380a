"""The station runtime with a real outbox: effects carried out, outcomes fed back."""

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from agent import purchase as p
from agent import sales
from agent.commands import BANK, SIGNER_OF, Command, Dispatcher, make_command
from agent.envelope import parse_json_object
from agent.errors import CocoonError, OutboxFull
from agent.signing import Ed25519Signer, Verifier
from agent.station import Station, payment_handler
from drivers.printer import open_printer

CLERK = p.Staff("s-01", "Clerk Li", "clerk")
SUPERVISOR = p.Staff("s-09", "Supervisor Wang", "supervisor")
FARMER = p.Farmer("04a1b2c3", "cpu", "F-0001", "Zhang San", "acct-1", 7)
GOOD = p.Weighing("scale-1", 52_400, 60, 52_340, True, True, frames_digest="d" * 64)
PRICED = p.Priced("+1", Decimal("38.50"), Decimal("2015.09"), {"table": "t:1"})


class Clock:
    t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def rig(make_outbox):
    written, shown, beeps = [], [], []
    outbox = make_outbox()
    printer = open_printer("dummy://")

    faults = {"card": False}

    def write_card(farmer, sale):
        if faults["card"]:
            raise CocoonError("card removed")
        written.append(sale)

    station = Station("station-01", outbox, write_card=write_card, display=shown.append,
                      buzzer=beeps.append, printer=printer, clock=Clock())
    station.faults = faults
    return station, outbox, written, shown, printer


def sell(station):
    for event in (p.StaffCard(CLERK), p.ScaleUpdate(GOOD), p.FarmerCard(FARMER),
                  p.Graded(PRICED), p.Confirm()):
        station.handle(event)


def void(station, voucher, reason="wrong grade"):
    """A supervisor signs in and voids the sale."""
    sale = sales.find(station.outbox, voucher=voucher)
    station.handle(p.StaffCard(SUPERVISOR))
    station.handle(p.Void(sale.seq, sale.voucher, reason))


def stored(outbox):
    return [parse_json_object(s.payload) for s in outbox.pending(100)]


def test_a_sale_is_recorded_written_and_printed(rig):
    station, outbox, written, shown, printer = rig
    sell(station)
    (event,) = [e for e in stored(outbox) if e["type"] == "purchase.recorded"]
    voucher = event["body"]["voucher"]
    assert voucher.startswith("station-01-") and event["priority"] == "money"
    assert written == [{**written[0], "voucher": voucher, "seq": event["seq"]}]
    assert voucher.encode() in printer.output
    assert any(voucher in text for text in shown)
    assert station.flow.phase is p.Phase.READY
    assert sales.find(outbox, voucher=voucher).amount == "2015.09"


def test_card_write_failure_is_recorded_and_the_sale_stands(rig):
    station, outbox, written, shown, _ = rig
    station.faults["card"] = True
    sell(station)
    types = [e["type"] for e in stored(outbox)]
    assert types == ["purchase.recorded", "card.write_failed"]


def test_a_full_outbox_refuses_the_sale_and_records_nothing(make_outbox):
    outbox = make_outbox(name="full.sqlite", capacity_bytes=64 * 1024, alert_reserve_bytes=4096)
    for pad in (3000, 300, 30):  # fill it up to the last few bytes
        with pytest.raises(OutboxFull):
            while True:
                outbox.append(p_draft(pad))
    shown = []
    station = Station("station-01", outbox, write_card=lambda f, s: None, display=shown.append,
                      clock=Clock())
    before = outbox.stats().head_seq
    sell(station)
    assert any("SALE NOT RECORDED" in t for t in shown)
    assert station.flow.phase is p.Phase.CONFIRMING
    assert sales.since(outbox, 0) == []
    assert outbox.stats().head_seq == before


def p_draft(pad):
    from agent.events import Draft
    return Draft("test.filler", "money", {"pad": "x" * pad})


def test_payment_confirmation_marks_the_sale_paid(rig):
    station, outbox, *_ = rig
    sell(station)
    voucher = sales.since(outbox, 0)[0].voucher
    paid = []
    handler = payment_handler(outbox, paid.append)
    cmd = Command("c1", "station-01", "payment.confirmed", None, None,
                  {"voucher": voucher, "payment_ref": "B-77", "amount": "2015.09"}, "k")
    assert handler(cmd)["payment_ref"] == "B-77"
    assert paid[0].paid_at and sales.find(outbox, voucher=voucher).payment_ref == "B-77"
    with pytest.raises(sales.SaleNotFound):
        handler(Command("c3", "station-01", "payment.confirmed", None, None,
                        {"voucher": "nope", "payment_ref": "x", "amount": "1.00"}, "k"))


# -- the bank's payment.confirmed through the real dispatcher -------------------------------

BANK_KEY = Ed25519Signer.generate()
NOW = datetime(2026, 6, 1, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def bank(rig):
    station, outbox, *_ = rig
    paid = []
    disp = Dispatcher("station-01", outbox,
                      {BANK: Verifier.from_pem(BANK_KEY.public_key_pem())}, now=lambda: NOW)
    disp.register("payment.confirmed", payment_handler(outbox, paid.append))

    def pay(body):
        """Send one signed payment.confirmed; the (type, body) of the handler's outcome."""
        cmd = make_command("station-01", "payment.confirmed", body, BANK_KEY, now=NOW)
        disp.handle(json.dumps(cmd).encode())
        (outcome,) = [(e["type"], e["body"]) for e in stored(outbox)
                      if e["type"] in ("command.done", "command.failed")
                      and e["body"]["id"] == cmd["id"]]
        return outcome

    return station, outbox, pay, paid


def test_the_command_is_named_payment_confirmed_and_signed_by_the_bank():
    assert SIGNER_OF["payment.confirmed"] == BANK
    assert "payment.confirm" not in SIGNER_OF


@pytest.mark.parametrize("amount", ["2015.09", "2015.090", "02015.09"])
def test_the_exact_amount_pays_the_sale(bank, amount):
    station, outbox, pay, paid = bank
    sell(station)
    voucher = sales.since(outbox, 0)[0].voucher
    kind, body = pay({"voucher": voucher, "payment_ref": "B-1", "amount": amount})
    assert kind == "command.done" and body["result"]["payment_ref"] == "B-1"
    assert sales.find(outbox, voucher=voucher).payment_ref == "B-1" and len(paid) == 1


@pytest.mark.parametrize("amount,why", [
    (None, "needs the amount"),          # the amount is required
    ("2015.1", "does not match"),
    ("2015.08", "does not match"),
    ("2015.091", "does not match"),
    ("-2015.09", "needs the amount"),
    ("2.01509E3", "needs the amount"),
    ("NaN", "needs the amount"),
    ("", "needs the amount"),
    (201509, "needs the amount"),        # a number, not a decimal string
])
def test_a_missing_or_different_amount_is_refused(bank, amount, why):
    station, outbox, pay, paid = bank
    sell(station)
    voucher = sales.since(outbox, 0)[0].voucher
    body = {"voucher": voucher, "payment_ref": "B-1"}
    if amount is not None:
        body["amount"] = amount
    kind, result = pay(body)
    assert kind == "command.failed" and why in result["reason"]
    assert sales.find(outbox, voucher=voucher).paid_at is None and paid == []


def test_a_voided_sale_cannot_be_paid(bank):
    station, outbox, pay, paid = bank
    sell(station)
    voucher = sales.since(outbox, 0)[0].voucher
    void(station, voucher)
    kind, result = pay({"voucher": voucher, "payment_ref": "B-1", "amount": "2015.09"})
    assert kind == "command.failed" and "voided" in result["reason"]
    assert sales.find(outbox, voucher=voucher).paid_at is None and paid == []


def test_a_paid_sale_is_not_paid_again_under_another_reference(bank):
    station, outbox, pay, paid = bank
    sell(station)
    voucher = sales.since(outbox, 0)[0].voucher
    assert pay({"voucher": voucher, "payment_ref": "B-1", "amount": "2015.09"})[0] == \
        "command.done"
    first = sales.find(outbox, voucher=voucher)
    kind, result = pay({"voucher": voucher, "payment_ref": "B-2", "amount": "2015.09"})
    assert kind == "command.failed" and "already paid" in result["reason"]
    assert sales.find(outbox, voucher=voucher) == first
    # the same payment again (a resent confirmation) is accepted and changes nothing
    kind, result = pay({"voucher": voucher, "payment_ref": "B-1", "amount": "2015.09"})
    assert kind == "command.done" and result["result"]["already_paid"] is True
    assert sales.find(outbox, voucher=voucher) == first and len(paid) == 1


def documented_table():
    import json
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "pricing.md").read_text()
    return json.loads(re.search(r"```json price-table\n(.*?)\n```", text, re.S).group(1))


def test_graded_with_the_table_in_force_and_recomputable_from_the_event(make_outbox, tmp_path):
    from datetime import datetime, timezone

    from agent.price_store import PriceTableStore
    from agent.price_tables import parse_price_table
    from agent.pricing_record import recompute

    store = PriceTableStore(tmp_path / "prices")
    store.install(documented_table())
    outbox = make_outbox(name="priced.sqlite")
    station = Station("station-01", outbox, write_card=lambda f, s: None, prices=store,
                      clock=Clock())
    when = datetime(2026, 6, 1, 8, tzinfo=timezone.utc)
    for event in (p.StaffCard(CLERK), p.ScaleUpdate(GOOD), p.FarmerCard(FARMER)):
        station.handle(event)
    station.grade({"shell_g": "9.35", "moisture_pct": "16", "reelable_pct": "100",
                   "defects_pct": {"perforated": "0", "stained": "1", "thin": "0",
                                   "mouldy": "0"}}, when=when)
    station.handle(station.inputs.get_nowait())
    assert station.flow.phase is p.Phase.CONFIRMING
    station.handle(p.Confirm())
    (event,) = [e for e in stored(outbox) if e["type"] == "purchase.recorded"]
    body = event["body"]
    # anyone holding the event and the table recomputes the amount exactly
    table = parse_price_table(documented_table())
    assert str(recompute(body["pricing"], table)) == body["amount"]
    assert body["grade"] == "+1" and body["scale"]["net_g"] == "52340"


def test_grading_without_weight_or_table_is_refused(make_outbox, tmp_path):
    shown = []
    station = Station("station-01", make_outbox(name="np.sqlite"), write_card=lambda f, s: None,
                      display=shown.append, clock=Clock())
    station.handle(p.StaffCard(CLERK))
    station.handle(p.FarmerCard(FARMER))
    station.grade({"shell_g": "9.35"})
    station.handle(station.inputs.get_nowait())
    assert any("no price table" in t for t in shown)

"""The station runtime with a real outbox: effects carried out, outcomes fed back."""

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from agent.contract.commands import BANK, SIGNER_OF, Command, make_command
from agent.contract.envelope import parse_json_object
from agent.contract.signing import Ed25519Signer, Verifier
from agent.errors import CocoonError, OutboxFull
from agent.spine.dispatcher import Dispatcher
from agent.station import purchase as p
from agent.station import sales
from agent.station.effects import CloseDay, EffectRunner, Reprint, payment_handler
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

    station = EffectRunner("station-01", outbox, write_card=write_card, display=shown.append,
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


@pytest.mark.parametrize("late", ["written", "failed"])
def test_a_card_that_does_not_answer_ends_in_a_failed_write_and_the_sale_stands(
        make_outbox, late):
    import threading
    import time

    outbox = make_outbox(name="slow.sqlite", device="station-01")
    release, finished, shown = threading.Event(), threading.Event(), []

    def stuck_write(farmer, sale):  # a reader that stops answering mid-write
        try:
            release.wait(30)
            if late == "failed":
                raise CocoonError("card removed")
        finally:
            finished.set()

    station = EffectRunner("station-01", outbox, write_card=stuck_write, display=shown.append,
                           timeouts=p.Timeouts(card_write_s=0.3), clock=Clock())
    started = time.monotonic()
    sell(station)
    assert time.monotonic() - started < 5
    assert station.flow.phase is p.Phase.READY          # the station is free for the next sale
    (recorded,) = events_of(outbox, "purchase.recorded")
    (failed,) = events_of(outbox, "card.write_failed")
    assert failed["body"]["seq"] == recorded["seq"]
    assert "did not answer within 0.3 s" in failed["body"]["reason"]
    uid = FARMER.card_uid
    assert [seq for seq, _ in sales.owed_to_card(outbox, uid)] == [recorded["seq"]]
    assert "updated at its next swipe" in shown[-1]
    # the card answers at last
    release.set()
    assert finished.wait(5)
    deadline = time.monotonic() + 5
    expect = [] if late == "written" else [recorded["seq"]]
    while [seq for seq, _ in sales.owed_to_card(outbox, uid)] != expect:
        assert time.monotonic() < deadline, "the late outcome was not applied"
        time.sleep(0.01)


def test_the_card_write_timeout_has_a_default():
    assert p.Timeouts().card_write_s == 10.0


def test_a_full_outbox_refuses_the_sale_and_records_nothing(make_outbox):
    outbox = make_outbox(name="full.sqlite", capacity_bytes=64 * 1024, alert_reserve_bytes=4096)
    for pad in (3000, 300, 30):  # fill it up to the last few bytes
        with pytest.raises(OutboxFull):
            while True:
                outbox.append(p_draft(pad))
    shown = []
    station = EffectRunner("station-01", outbox, write_card=lambda f, s: None, display=shown.append,
                           clock=Clock())
    before = outbox.stats().head_seq
    sell(station)
    assert any("SALE NOT RECORDED" in t for t in shown)
    assert station.flow.phase is p.Phase.CONFIRMING
    assert sales.since(outbox, 0) == []
    assert outbox.stats().head_seq == before


def p_draft(pad):
    from agent.contract.events import Draft
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


# -- voiding and correcting through the station, with a real outbox ------------------------


def events_of(outbox, type_):
    return [e for e in stored(outbox) if e["type"] == type_]


def test_a_void_marks_the_sale_with_the_seq_of_its_own_event(rig):
    station, outbox, written, shown, _ = rig
    sell(station)
    voucher = sales.since(outbox, 0)[0].voucher
    # another part of the agent (the dispatcher, the uplink's alerts) appends at the same
    # moment: the head is then past the void's own event
    append = outbox.append

    def busy_append(draft, **kw):
        seq = append(draft, **kw)
        if draft.type == "purchase.voided":
            append(p_draft(10))
        return seq

    outbox.append = busy_append
    void(station, voucher)
    (voided,) = events_of(outbox, "purchase.voided")
    assert outbox.stats().head_seq == voided["seq"] + 1
    sale = sales.find(outbox, voucher=voucher)
    assert sale.voided_by == voided["seq"]
    assert voided["body"] == {"original_seq": sale.seq, "original_voucher": voucher,
                              "supervisor": "s-09", "reason": "wrong grade"}
    assert f"Voucher {voucher} voided (seq {voided['seq']})" in shown[-1]


def test_a_void_that_cannot_be_recorded_leaves_the_sale_standing(make_outbox):
    outbox = make_outbox(name="full.sqlite", device="station-01", capacity_bytes=64 * 1024,
                         alert_reserve_bytes=4096)
    shown = []
    station = EffectRunner("station-01", outbox, write_card=lambda f, s: None, display=shown.append,
                           clock=Clock())
    sell(station)
    voucher = sales.since(outbox, 0)[0].voucher
    for pad in (3000, 300, 30):  # fill it up to the last few bytes
        with pytest.raises(OutboxFull):
            while True:
                outbox.append(p_draft(pad))
    head = outbox.stats().head_seq
    void(station, voucher)
    assert sales.find(outbox, voucher=voucher).voided_by is None
    assert events_of(outbox, "purchase.voided") == []
    assert outbox.stats().head_seq == head
    assert f"Voucher {voucher} NOT voided" in shown[-1] and "full" in shown[-1]


def test_voiding_needs_a_supervisor(rig):
    station, outbox, written, shown, _ = rig
    sell(station)
    sale = sales.since(outbox, 0)[0]
    station.handle(p.Void(sale.seq, sale.voucher, "wrong grade"))  # the clerk is signed in
    assert "supervisor" in shown[-1]
    assert sales.find(outbox, seq=sale.seq).voided_by is None
    assert events_of(outbox, "purchase.voided") == []


def test_a_sale_is_voided_once_and_a_paid_sale_not_at_all(rig):
    station, outbox, written, shown, _ = rig
    sell(station)
    sell(station)
    station.handle(p.Confirm())  # the same card and weight again: confirmed twice
    first, second = sales.since(outbox, 0)
    void(station, first.voucher)
    voided_by = sales.find(outbox, seq=first.seq).voided_by
    void(station, first.voucher)
    assert f"Voucher {first.voucher} NOT voided" in shown[-1] and "voided" in shown[-1]
    assert sales.find(outbox, seq=first.seq).voided_by == voided_by
    sales.mark_paid(outbox, second.voucher, "B-9")
    void(station, second.voucher)
    assert f"Voucher {second.voucher} NOT voided" in shown[-1] and "paid" in shown[-1]
    assert sales.find(outbox, seq=second.seq).voided_by is None
    assert len(events_of(outbox, "purchase.voided")) == 1


def correct(station, voucher, staff=SUPERVISOR, reason="wrong grade", priced=PRICED):
    """A supervisor signs in, asks to correct the sale and sells again."""
    sale = sales.find(station.outbox, voucher=voucher)
    for event in (p.StaffCard(staff), p.Correct(sale.seq, sale.voucher, reason),
                  p.FarmerCard(FARMER), p.ScaleUpdate(GOOD), p.Graded(priced), p.Confirm()):
        station.handle(event)


def test_a_correction_records_a_new_sale_that_voids_the_original(rig):
    from agent.station.view import sale_lines

    station, outbox, written, shown, _ = rig
    sell(station)
    original = sales.since(outbox, 0)[0]
    fixed = p.Priced("+2", Decimal("39.00"), Decimal("2041.26"), {"table": "t:1"})
    correct(station, original.voucher, priced=fixed)
    (_, new) = events_of(outbox, "purchase.recorded")
    assert new["body"]["corrects"] == {"seq": original.seq, "voucher": original.voucher,
                                       "supervisor": "s-09", "reason": "wrong grade"}
    assert new["body"]["amount"] == "2041.26" and new["body"]["clerk"] == "s-09"
    # the original is voided by the correcting sale, in that sale's own transaction
    assert sales.find(outbox, seq=original.seq).voided_by == new["seq"]
    assert events_of(outbox, "purchase.voided") == []
    assert [(line.voucher, line.state) for line in sale_lines(outbox, 0)] == [
        (original.voucher, "voided"), (new["body"]["voucher"], "queued")]
    assert f"replaces voucher {original.voucher}" in " ".join(shown)
    assert written[-1]["voucher"] == new["body"]["voucher"]
    # the bank can pay the new sale, not the original
    handler = payment_handler(outbox)
    with pytest.raises(sales.SaleClosed):
        handler(Command("c1", "station-01", "payment.confirmed", None, None,
                        {"voucher": original.voucher, "payment_ref": "B-1",
                         "amount": original.amount}, "k"))
    assert handler(Command("c2", "station-01", "payment.confirmed", None, None,
                           {"voucher": new["body"]["voucher"], "payment_ref": "B-1",
                            "amount": "2041.26"}, "k"))["seq"] == new["seq"]


def test_a_correction_needs_a_supervisor(rig):
    station, outbox, written, shown, _ = rig
    sell(station)
    original = sales.since(outbox, 0)[0]
    correct(station, original.voucher, staff=CLERK)
    assert any("Correcting a sale needs a supervisor" in t for t in shown)
    # what the clerk then sold is an ordinary sale, and the original stands
    assert all("corrects" not in e["body"] for e in events_of(outbox, "purchase.recorded"))
    assert sales.find(outbox, seq=original.seq).voided_by is None


def test_a_paid_or_voided_sale_cannot_be_corrected(rig):
    station, outbox, written, shown, _ = rig
    sell(station)
    original = sales.since(outbox, 0)[0]
    sales.mark_paid(outbox, original.voucher, "B-1")
    head = outbox.stats().head_seq
    correct(station, original.voucher)
    assert "SALE NOT RECORDED" in shown[-1] and "already paid" in shown[-1]
    assert outbox.stats().head_seq == head and len(sales.since(outbox, 0)) == 1
    assert station.flow.phase is p.Phase.CONFIRMING
    station.handle(p.Cancel())
    assert station.flow.correcting is None


def test_the_clerks_keys_refuse_a_closed_sale_at_once(rig):
    from types import SimpleNamespace

    from agent.station.console import CorrectRequest, VoidRequest, apply_key

    station, outbox, *_ = rig
    sell(station)
    sale = sales.since(outbox, 0)[0]
    submitted = []
    part = SimpleNamespace(outbox=outbox, submit=submitted.append)
    apply_key(part, CorrectRequest(sale.voucher, "wrong grade"))
    assert submitted == [p.Correct(sale.seq, sale.voucher, "wrong grade")]
    sales.mark_paid(outbox, sale.voucher, "B-1")
    for request in (VoidRequest(sale.voucher, "x"), CorrectRequest(sale.voucher, "x")):
        with pytest.raises(sales.SaleClosed, match="already paid"):
            apply_key(part, request)
    assert len(submitted) == 1


def documented_table():
    import json
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "pricing.md").read_text()
    return json.loads(re.search(r"```json price-table\n(.*?)\n```", text, re.S).group(1))


def test_graded_with_the_table_in_force_and_recomputable_from_the_event(make_outbox, tmp_path):
    from datetime import datetime, timezone

    from agent.contract.commands import make_command
    from agent.contract.pricing.record import recompute
    from agent.contract.pricing.tables import parse_price_table
    from agent.contract.signing import Ed25519Signer, Verifier
    from agent.station.price_store import PriceTableStore

    backend = Ed25519Signer.generate()
    store = PriceTableStore(tmp_path / "prices", Verifier.from_pem(backend.public_key_pem()),
                            "station-01")
    store.install(make_command("station-01", "price_table.set", documented_table(), backend))
    outbox = make_outbox(name="priced.sqlite")
    station = EffectRunner("station-01", outbox, write_card=lambda f, s: None, prices=store,
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
    station = EffectRunner("station-01", make_outbox(name="np.sqlite"),
                           write_card=lambda f, s: None, display=shown.append, clock=Clock())
    station.handle(p.StaffCard(CLERK))
    station.handle(p.FarmerCard(FARMER))
    station.grade({"shell_g": "9.35"})
    station.handle(station.inputs.get_nowait())
    assert any("no price table" in t for t in shown)


# -- the end of the day, and a voucher's copy ------------------------------------------------


def test_the_day_is_closed_with_its_totals_per_grade_and_the_report_printed(rig):
    station, outbox, _, shown, printer = rig
    sell(station)
    sell(station)
    station.handle(p.Confirm())                     # the same weight again: confirmed twice
    first, second = sales.since(outbox, 0)
    void(station, second.voucher)
    station.handle(CloseDay())
    (closed,) = [e for e in stored(outbox) if e["type"] == "day.closed"]
    assert closed["priority"] == "money"            # signed, never evicted
    body = closed["body"]
    day = first.voucher.split("-")[-2]
    assert (body["day"], body["count"], body["net_g"], body["amount"], body["voided"]) == (
        day, 1, "52340", "2015.09", 1)
    assert body["by_grade"] == [{"grade": "+1", "count": 1, "net_g": "52340",
                                 "amount": "2015.09"}]
    assert (body["station"], body["clerk"], body["acknowledged"], body["paid"]) == (
        "station-01", SUPERVISOR.staff_id, 0, 0)
    assert (body["first_seq"], body["last_seq"]) == (first.seq, second.seq)
    assert b"END OF DAY REPORT" in printer.output
    assert b"Grade +1: 1 sales, 52.340 kg, 2015.09 yuan" in printer.output
    assert shown[-1].startswith(f"Day {day} closed: 1 sales, 2015.09 yuan")


def test_a_voucher_is_printed_again_marked_as_a_copy(rig):
    station, outbox, _, shown, printer = rig
    sell(station)
    (sale,) = sales.since(outbox, 0)
    first = printer.output
    station.handle(Reprint(sale.voucher))
    again = printer.output[len(first):]
    assert b"*** COPY ***" in again and sale.voucher.encode() in again
    assert b"*** COPY ***" not in first
    assert shown[-1] == f"Voucher {sale.voucher} printed again (copy)"
    station.handle(Reprint("station-01-20000101-0001"))
    assert shown[-1] == "no sale station-01-20000101-0001 at this station"


def test_closing_the_day_needs_a_clerk_and_no_sale_in_progress(rig):
    station, outbox, _, shown, _ = rig
    station.handle(CloseDay())
    assert shown[-1] == "Sign in with your staff card first"
    for event in (p.StaffCard(CLERK), p.ScaleUpdate(GOOD), p.FarmerCard(FARMER)):
        station.handle(event)
    station.handle(CloseDay())
    assert shown[-1] == "Finish or cancel the current sale first"
    assert not [e for e in stored(outbox) if e["type"] == "day.closed"]

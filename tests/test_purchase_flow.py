"""The purchase state machine, driven directly: no thread, port or clock."""

from decimal import Decimal

import pytest

from agent.station import purchase as p

CLERK = p.Staff("s-01", "Clerk Li", "clerk")
SUPERVISOR = p.Staff("s-09", "Supervisor Wang", "supervisor")
FARMER = p.Farmer("04a1b2c3", "cpu", "F-0001", "Zhang San", "acct-tok-1", 7)
GOOD = p.Weighing("scale-1", 52_400, 60, 52_340, True, True, frames_digest="d" * 64)
PRICED = p.Priced("+1", Decimal("38.50"), Decimal("2015.09"), {"table": "2026-spring:3"})


def kinds(effects):
    return [type(e).__name__ for e in effects]


def texts(effects):
    return " | ".join(e.text for e in effects if isinstance(e, p.Show))


@pytest.fixture
def flow():
    return p.PurchaseFlow("station-01")


def to_confirming(flow, now=0.0, farmer=FARMER):
    flow.handle(p.StaffCard(CLERK), now)
    flow.handle(p.ScaleUpdate(GOOD), now)
    flow.handle(p.FarmerCard(farmer), now)
    assert flow.phase is p.Phase.GRADING
    flow.handle(p.Graded(PRICED), now)
    assert flow.phase is p.Phase.CONFIRMING


def test_a_whole_sale(flow):
    assert kinds(flow.handle(p.FarmerCard(FARMER), 0)) == ["Show", "Beep"]  # nobody signed in
    assert flow.phase is p.Phase.IDLE
    flow.handle(p.StaffCard(CLERK), 1)
    assert flow.phase is p.Phase.READY
    flow.handle(p.FarmerCard(FARMER), 2)
    assert flow.phase is p.Phase.WEIGHING
    unstable = p.Weighing("scale-1", 52_000, 60, 51_940, False, False, "unstable")
    assert flow.handle(p.ScaleUpdate(unstable), 3) == []
    assert flow.phase is p.Phase.WEIGHING
    effects = flow.handle(p.ScaleUpdate(GOOD), 4)
    assert flow.phase is p.Phase.GRADING and "52.340 kg" in texts(effects)
    flow.handle(p.Graded(PRICED), 5)
    effects = flow.handle(p.Confirm(), 6)
    (record,) = effects
    assert isinstance(record, p.RecordPurchase) and flow.phase is p.Phase.RECORDING
    body = record.body
    assert body["amount"] == "2015.09" and body["scale"]["net_g"] == "52340"
    assert body["farmer"]["card_counter"] == 7 and body["clerk"] == "s-01"
    assert body["scale"]["frames_digest"] == "d" * 64 and body["pricing"]
    effects = flow.handle(p.Recorded(42, "station-01-20260601-0001"), 7)
    write, printed = effects
    assert write.sale["voucher"] == "station-01-20260601-0001" and write.sale["seq"] == 42
    assert printed.voucher["amount"] == "2015.09" and printed.voucher["seq"] == 42
    effects = flow.handle(p.CardWritten(), 8)
    assert "voucher station-01-20260601-0001" in texts(effects)
    assert flow.phase is p.Phase.READY and flow.sale is None


def test_card_removed_before_confirmation_cancels(flow):
    to_confirming(flow)
    effects = flow.handle(p.CardRemoved(), 1)
    assert kinds(effects)[0] == "RecordEvent" and effects[0].type == "purchase.cancelled"
    assert flow.phase is p.Phase.READY and flow.sale is None


def test_a_changed_or_silent_scale_blocks_confirmation(flow):
    to_confirming(flow)
    moved = p.Weighing("scale-1", 53_000, 60, 52_940, True, True)
    flow.handle(p.ScaleUpdate(moved), 1)
    assert flow.phase is p.Phase.WEIGHING and flow.sale.priced is None
    assert kinds(flow.handle(p.Confirm(), 2)) == ["Show", "Beep"]
    flow.handle(p.ScaleUpdate(GOOD), 3)
    flow.handle(p.Graded(PRICED), 3)
    effects = flow.handle(p.ScaleUpdate(None), 4)
    assert flow.phase is p.Phase.WEIGHING and "silent" in texts(effects)


def test_below_minimum_or_overload_is_never_taken(flow):
    flow.handle(p.StaffCard(CLERK), 0)
    flow.handle(p.FarmerCard(FARMER), 0)
    for reason in ("below minimum load (20 e)", "overload", "negative weight"):
        flow.handle(p.ScaleUpdate(p.Weighing("scale-1", 100, 0, 100, True, False, reason)), 1)
        assert flow.phase is p.Phase.WEIGHING


def test_duplicate_needs_a_second_confirmation(flow):
    to_confirming(flow)
    flow.handle(p.Confirm(), 1)
    flow.handle(p.Recorded(1, "v1"), 1)
    flow.handle(p.CardWritten(), 1)
    flow.handle(p.FarmerCard(FARMER), 60)
    flow.handle(p.Graded(PRICED), 61)
    effects = flow.handle(p.Confirm(), 62)
    assert flow.phase is p.Phase.CONFIRM_AGAIN and "same weight" in texts(effects)
    assert isinstance(flow.handle(p.Confirm(), 63)[0], p.RecordPurchase)


def test_no_duplicate_question_after_the_window(flow):
    to_confirming(flow)
    flow.handle(p.Confirm(), 1)
    flow.handle(p.Recorded(1, "v1"), 1)
    flow.handle(p.CardWritten(), 1)
    flow.handle(p.FarmerCard(FARMER), 2000)
    flow.handle(p.Graded(PRICED), 2000)
    assert isinstance(flow.handle(p.Confirm(), 2001)[0], p.RecordPurchase)


def test_a_sale_that_cannot_be_recorded_is_refused_not_half_recorded(flow):
    to_confirming(flow)
    flow.handle(p.Confirm(), 1)
    effects = flow.handle(p.RecordFailed("outbox full: ..."), 2)
    assert "SALE NOT RECORDED" in texts(effects)
    assert flow.phase is p.Phase.CONFIRMING
    assert not any(isinstance(e, (p.WriteCard, p.PrintVoucher)) for e in effects)


def test_card_write_failure_keeps_the_sale_and_records_it(flow):
    to_confirming(flow)
    flow.handle(p.Confirm(), 1)
    flow.handle(p.Recorded(5, "v5"), 1)
    flow.handle(p.CardRemoved(), 2)  # pulled out while writing: the sale stands
    effects = flow.handle(p.CardWriteFailed("card removed"), 2)
    note = effects[0]
    assert note.type == "card.write_failed" and note.body["seq"] == 5
    assert flow.phase is p.Phase.READY and "next swipe" in texts(effects)


@pytest.mark.parametrize("phase_setup,timeout", [
    ("weighing", 300), ("grading", 600), ("confirming", 180)])
def test_every_step_times_out(flow, phase_setup, timeout):
    flow.handle(p.StaffCard(CLERK), 0)
    flow.handle(p.FarmerCard(FARMER), 0)
    if phase_setup != "weighing":
        flow.handle(p.ScaleUpdate(GOOD), 0)
    if phase_setup == "confirming":
        flow.handle(p.Graded(PRICED), 0)
    assert flow.handle(p.Tick(), timeout - 1) == []
    effects = flow.handle(p.Tick(), timeout + 1)
    assert effects[0].type == "purchase.cancelled" and "timed out" in effects[0].body["reason"]
    assert flow.phase is p.Phase.READY


def test_idle_clerk_is_signed_out(flow):
    flow.handle(p.StaffCard(CLERK), 0)
    flow.handle(p.Tick(), 1801)
    assert flow.phase is p.Phase.IDLE and flow.clerk is None


def test_cancel_and_void(flow):
    to_confirming(flow)
    flow.handle(p.Cancel(), 1)
    assert flow.phase is p.Phase.READY
    refused = flow.handle(p.Void(5, "v5", "wrong grade"), 2)
    assert "supervisor" in texts(refused)
    flow.handle(p.StaffCard(SUPERVISOR), 3)
    (effect,) = flow.handle(p.Void(5, "v5", "wrong grade"), 4)
    assert isinstance(effect, p.RecordVoid)
    assert effect.body == {"original_seq": 5, "original_voucher": "v5",
                           "supervisor": "s-09", "reason": "wrong grade"}
    # what the clerk sees depends on what the station could record
    assert "voided (seq 9)" in texts(flow.handle(p.Voided("v5", 9), 5))
    assert "NOT voided: already paid" in texts(flow.handle(p.VoidFailed("v5", "already paid"),
                                                           6))


def test_a_correction_needs_a_supervisor_and_the_next_sale_carries_it(flow):
    flow.handle(p.StaffCard(CLERK), 0)
    assert "supervisor" in texts(flow.handle(p.Correct(5, "v5", "wrong grade"), 1))
    assert flow.correcting is None
    flow.handle(p.StaffCard(SUPERVISOR), 2)
    assert "Correcting voucher v5" in texts(flow.handle(p.Correct(5, "v5", "wrong grade"), 3))
    assert "correction" in texts(flow.handle(p.Void(6, "v6", "x"), 3))  # one thing at a time
    flow.handle(p.FarmerCard(FARMER), 4)
    flow.handle(p.ScaleUpdate(GOOD), 4)
    flow.handle(p.Graded(PRICED), 4)
    (record,) = flow.handle(p.Confirm(), 5)
    assert record.body["corrects"] == {"seq": 5, "voucher": "v5", "supervisor": "s-09",
                                       "reason": "wrong grade"}
    assert record.body["clerk"] == "s-09"
    flow.handle(p.Recorded(8, "v8"), 6)
    assert flow.correcting is None
    assert "replaces voucher v5" in texts(flow.handle(p.CardWritten(), 6))
    # the sale after it is an ordinary one
    flow.handle(p.FarmerCard(FARMER), 7)
    flow.handle(p.Graded(PRICED), 7)
    (record,) = [e for e in flow.handle(p.Confirm(), 8) + flow.handle(p.Confirm(), 8)
                 if isinstance(e, p.RecordPurchase)]
    assert "corrects" not in record.body


@pytest.mark.parametrize("how,card", [("cancel", True), ("cancel", False),
                                      ("card removed", True), ("sign out", True),
                                      ("sign out", False), ("other staff", False)])
def test_an_abandoned_correction_leaves_the_original_standing(flow, how, card):
    flow.handle(p.StaffCard(SUPERVISOR), 0)
    flow.handle(p.Correct(5, "v5", "wrong grade"), 1)
    if card:
        flow.handle(p.FarmerCard(FARMER), 2)
    effects = {"cancel": p.Cancel(), "card removed": p.CardRemoved(), "sign out": p.SignOut(),
               "other staff": p.StaffCard(CLERK)}[how]
    assert "Correction of voucher v5 abandoned" in texts(flow.handle(effects, 3))
    assert flow.correcting is None


def test_cannot_cancel_once_recording(flow):
    to_confirming(flow)
    flow.handle(p.Confirm(), 1)
    assert "void" in texts(flow.handle(p.Cancel(), 2))
    assert flow.phase is p.Phase.RECORDING

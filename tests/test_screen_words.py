"""Every sentence the station says is known to the screen, which says it in the clerk's language:
the pure purchase flow is driven through its paths and each message it shows must be
recognised (a new or reworded message fails here until the screen's table and catalog have it).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

from agent.screen.flow_words import flow_words, known
from agent.screen.i18n import Language
from agent.station import card_messages
from agent.station import purchase as p
from tests.test_pricing import DELETE

ROOT = Path(__file__).resolve().parents[1]

CLERK = p.Staff("s-01", "Clerk Li", "clerk")
SUPERVISOR = p.Staff("s-09", "Supervisor Wang", "supervisor")
FARMER = p.Farmer("04a1b2c3", "cpu", "F-0001", "Zhang San", "acct-1", 7)
GOOD = p.Weighing("scale-1", 52_400, 400, 52_000, True, True)
MOVING = p.Weighing("scale-1", 52_100, 400, 51_700, False, False,
                    reason="the weight is not stable")
OTHER = p.Weighing("scale-1", 53_000, 400, 52_600, True, True)
LOW = p.Weighing("scale-1", 100, 400, -300, True, False, reason="below the minimum load")
RECORD = {"inputs": {"net_g": "52000"}, "grade": "+2", "graded_price": "40.10",
          "deductions": [{"measure": "moisture", "measured_pct": "16.5", "applies_to": "mass",
                          "pct": "2.25"}],
          "payable_g": "50830", "unit_price": "40.10", "amount": "2038.28"}
PRICED = p.Priced("+2", Decimal("40.10"), Decimal("2038.28"), RECORD)


def said(flow: p.PurchaseFlow, events, now: float = 0.0) -> list[str]:
    out = []
    for event in events:
        out += [e.text for e in flow.handle(event, now) if isinstance(e, p.Show)]
    return out


def sale(flow, now=0.0):
    return said(flow, [p.FarmerCard(FARMER), p.ScaleUpdate(GOOD), p.Graded(PRICED)], now)


def all_sentences() -> list[str]:
    texts = []
    f = p.PurchaseFlow("station-01")
    texts += said(f, [p.FarmerCard(FARMER), p.Confirm(), p.Graded(PRICED)])
    texts += said(f, [p.StaffCard(CLERK), p.Confirm()])
    texts += said(f, [p.CardRefused("forged card"), p.FarmerCard(FARMER)])
    texts += said(f, [p.StaffCard(CLERK), p.Graded(PRICED), p.ScaleUpdate(GOOD),
                      p.GradeRefused("grade -9 is not priced")])
    texts += said(f, [p.ScaleUpdate(MOVING), p.ScaleUpdate(GOOD), p.ScaleUpdate(None),
                      p.ScaleUpdate(GOOD), p.ScaleUpdate(OTHER), p.ScaleUpdate(GOOD),
                      p.ScaleUpdate(LOW), p.ScaleUpdate(GOOD), p.Graded(PRICED), p.Confirm()])
    texts += said(f, [p.StaffCard(CLERK), p.Cancel(), p.RecordFailed("disk full"),
                      p.Confirm(), p.Recorded(5, "station-01-20261207-0001"),
                      p.CardRemoved(), p.CardWritten()])
    texts += sale(f)                                   # the same card and weight again
    texts += said(f, [p.Confirm(), p.Confirm(), p.Recorded(6, "station-01-20261207-0002"),
                      p.CardWriteFailed("card removed")])
    texts += sale(f) + said(f, [p.Cancel()])
    texts += sale(f) + said(f, [p.CardRemoved()])
    texts += said(f, [p.FarmerCard(FARMER), p.Tick()], now=0) + said(f, [p.Tick()], now=10**6)
    texts += said(f, [p.Tick()], now=10**7)            # signed out after inactivity
    texts += said(f, [p.StaffCard(CLERK), p.Void(5, "station-01-20261207-0001", "wrong"),
                      p.Correct(5, "station-01-20261207-0001", "wrong"), p.SignOut()])
    texts += said(f, [p.StaffCard(SUPERVISOR),
                      p.Correct(5, "station-01-20261207-0001", "wrong grade"),
                      p.Void(6, "station-01-20261207-0002", "wrong"),
                      p.Correct(6, "station-01-20261207-0002", "wrong")])
    texts += sale(f) + said(f, [p.Confirm(), p.Recorded(7, "station-01-20261207-0003"),
                                p.CardWritten()])
    texts += said(f, [p.Correct(6, "station-01-20261207-0002", "again"), p.Cancel(),
                      p.Voided("station-01-20261207-0002", 8),
                      p.VoidFailed("station-01-20261207-0002", "already paid")])
    texts += sale(f) + said(f, [p.Confirm(), p.Confirm(), p.RecordUncertain("disk I/O error")])
    held = p.PurchaseFlow("station-01", legal_hold=True)              # changed legal software
    texts += said(held, [p.StaffCard(CLERK), p.FarmerCard(FARMER), p.SignOut(),
                         p.StaffCard(SUPERVISOR), p.LegalAckFailed("disk full"),
                         p.LegalAcknowledged("s-09")])
    texts += said(p.PurchaseFlow("station-01"), [
        p.StaffCard(CLERK), p.FarmerCard(FARMER), p.ScaleUpdate(GOOD),
        p.GradeRefused(p.message("cannot_price", reason="the price table was edited"))])
    for key, values in (("card_cannot_authenticate", {"card": "farmer card", "detail": "6A82"}),
                        ("card_failed_authentication", {"card": "staff card"}),
                        ("card_refused_station", {"card": "farmer card", "detail": "6982"}),
                        ("psam_unavailable", {"reason": "no SAM in the slot"}),
                        ("m1_not_allowed", {}), ("blacklist_never", {}),
                        ("blacklist_too_old", {"age_h": "80", "limit_h": "72"})):
        texts.append("Card refused: " + card_messages.message(key, **values))  # card desk
    notices = [card_messages.message("m1_weaker"),                  # beside the flow's line
               card_messages.message("blacklist_stale", age_h="30", max_h="24")]
    texts.append(" | ".join(["Sale recorded: voucher station-01-20261207-0001", *notices]))
    texts += [p.message("legal_hold"),                                  # part.py, unkeyed
              "Voucher station-01-20261207-0001 paid by the bank (BANK-0001)",   # part.py
              "Printer fault: out of paper. The sale is recorded; print it again.",  # effects
              "WARNING: could not record card.write_failed: disk full",
              "Swipe a staff card to start."]
    return texts


def test_every_sentence_of_the_station_is_known_to_the_screen():
    texts = all_sentences()
    assert len(set(texts)) >= 30
    unknown = sorted({t for t in texts if not known(t)})
    assert unknown == []


def test_the_screen_says_them_in_chinese_keeping_the_values():
    zh, en = Language("zh-CN"), Language("en")
    for text in all_sentences():
        assert "{" not in flow_words(zh, text), text
    assert flow_words(en, "Grading refused: grade -9 is not priced") == \
        "Grading refused: grade -9 is not priced"
    assert flow_words(zh, "Grading refused: grade -9 is not priced") == \
        "定级被拒：grade -9 is not priced"
    confirm = next(t for t in all_sentences() if t.endswith("Farmer confirms?"))
    assert "2038.28" in flow_words(zh, confirm) and "蚕农是否同意" in flow_words(zh, confirm)
    cannot = "Grading refused: " + p.message("cannot_price", reason="edited")
    assert flow_words(zh, cannot) == "定级被拒：本站无法计价：edited"
    assert flow_words(zh, "something new") == "something new"
    refused = "Card refused: " + card_messages.message("card_failed_authentication",
                                                       card="farmer card")
    assert flow_words(zh, refused).startswith("卡被拒绝：此蚕农卡")
    line = "Sale recorded: voucher V-1 | " + card_messages.message("m1_weaker")
    assert flow_words(zh, line).startswith("收购已记录：凭证 V-1 | M1 卡")


def test_the_station_requests_sentences_are_known_and_said_in_chinese():
    """The end of the day and a voucher's copy speak through the same table."""
    zh = Language("zh-CN")
    closed = ("Day 20261207 closed: 3 sales, 5120.40 yuan; 2 acknowledged by the bank. "
              "The report is printed.")
    copy = "Voucher station-01-20261207-0002 printed again (copy)"
    for text in (closed, copy, "Sign in with your staff card first",
                 "no sale V-9 at this station",
                 "Printer fault: out of paper. The day report 20261207 is recorded; print it "
                 "again."):
        assert known(text), text
        assert flow_words(zh, text) != text and "{" not in flow_words(zh, text)
    assert flow_words(zh, closed) == ("20261207 已日结：3 笔，5120.40 元；银行已收到 2 笔。"
                                      "报表已打印")


# -- the reasons the scale check and the pricing give ------------------------------------------

def scale_reasons() -> list[str]:
    """Each refusal of drivers.scale.sale.check_sale, and the station's held-tare guard, as
    the weighing joins them."""
    from drivers.scale.reading import Reading, Unit, WeightKind
    from drivers.scale.sale import SalePolicy, check_sale

    policy = SalePolicy(Decimal("20"), 20, Decimal("150000"))

    def reading(weight: str | None = "52.40", **kw) -> Reading:
        return Reading("xk3190-a9", b"", None if weight is None else Decimal(weight),
                       None if weight is None else Unit.KG, **{"stable": True, **kw})

    cases = [(reading(overload=True), None), (reading(underload=True), None),
             (reading(out_of_range=True), None), (reading(unzeroed=True), None),
             (reading(None), None), (reading(kind=WeightKind.TARE), None),
             (reading("-0.40"), None), (reading("-0.40", kind=WeightKind.GROSS), None),
             (reading("52.41"), None), (reading(kind=WeightKind.NET), None),
             (reading(kind=WeightKind.NET, tare=Decimal("-0.40")), None),
             (reading(kind=WeightKind.NET, tare=Decimal("0.0004")), None),
             (reading("0.30"), None), (reading("0.60"), None), (reading("160.00"), None),
             (reading(stable=False), None), (reading(stable=None), None)]
    texts = [str(check_sale(r, policy, stable=s, tare_g=400)) for r, s in cases]
    assert all(t != "ready" for t in texts)
    from agent.station.weighing import HELD_TARE

    return texts + [HELD_TARE, f"the weight is not stable; {HELD_TARE}"]


def pricing_reasons() -> list[str]:
    """Each refusal of agent.contract.pricing.price for a lot the clerk could enter."""
    from agent.contract.pricing.amount import Lot, price
    from agent.contract.pricing.errors import MeasurementError, PurchaseRefused
    from agent.contract.pricing.tables import parse_price_table
    from tests.test_pricing import PER_50KG_DOC, PER_KG_DOC, edit

    shell = parse_price_table(json.loads((ROOT / "config" / "price-table.example.json")
                                         .read_text()))
    ratio = parse_price_table(PER_50KG_DOC)
    heavy = parse_price_table(edit(PER_KG_DOC, deductions__reelable__rate="4",
                                   deductions__reelable__refuse_beyond_pct=DELETE))
    good = {"moisture_pct": "15", "reelable_pct": "100",
            "defects_pct": {"mouldy": "0", "perforated": "0", "stained": "0", "thin": "0"}}
    cases = [(shell, dict(shell_g="20")), (shell, dict(moisture_pct="25")),
             (shell, dict(reelable_pct="50")), (shell, dict(moisture_pct="150")),
             (shell, dict(shell_g=None)), (shell, dict(shell_g="60")),
             (shell, dict(moisture_pct="-1")),
             (shell, dict(defects_pct={**good["defects_pct"], "mouldy": "-1"})),
             (shell, dict(defects_pct={**good["defects_pct"], "burnt": "1"})),
             (shell, dict(shell_g=None, shell_ratio_pct="21")),
             (shell, dict(defects_pct={"mouldy": "0", "perforated": "100", "stained": "100",
                                       "thin": "100"})),
             (shell, dict(net_g=0)), (shell, dict(net_g=10 ** 9 + 1)),
             (shell, dict(defects_pct={"perforated": "0", "stained": "0", "thin": "0"})),
             (ratio, dict(shell_g=None, shell_ratio_pct=None)),
             (ratio, dict(shell_g=None, shell_ratio_pct="150")),
             (ratio, dict(shell_g=None, shell_ratio_pct="5")),
             (ratio, dict(shell_g=None, shell_ratio_pct="80")),
             (ratio, dict(shell_ratio_pct=None)),
             (heavy, dict(reelable_pct="60")),
             (shell, dict(defects_pct={"mouldy": "0", "perforated": "100", "stained": "100",
                                       "thin": "3.333"}))]
    texts = []
    for table, changes in cases:
        values = {"net_g": 52000, "shell_g": "9.6", **good, **changes}
        try:
            price(table, Lot(**values))
        except (MeasurementError, PurchaseRefused) as exc:
            texts.append(str(exc))
        else:
            raise AssertionError(f"{changes} was priced")
    return texts


def test_every_reason_of_the_scale_and_the_pricing_is_said_in_chinese():
    zh, en = Language("zh-CN"), Language("en")
    reasons = scale_reasons() + pricing_reasons()
    assert len(set(reasons)) == len(reasons)
    for reason in reasons:
        said = flow_words(zh, reason)
        assert known(reason), reason
        assert "{" not in said and said != reason, (reason, said)
        # No English sentence is left: what stays is values (numbers, units, ids, e).
        values = re.sub(r"v\d+ \(.*?\)|\S+-\S+-\S+|burnt", "", said)
        assert not re.search(r"[A-Za-z]{4,}", values), (reason, said)
        assert flow_words(en, reason) and "{" not in flow_words(en, reason)
    # Inside the flow's sentences, with the measurement named as its grade field is.
    refused = flow_words(zh, "Grading refused: moisture 25 % is above the limit of 21 % in the "
                             "price table: the lot cannot be bought as it is")
    assert refused == "定级被拒：水分 25 % 超过价格表的上限 21 %：这批蚕茧不能按现状收购"
    assert flow_words(zh, "the weight is not stable; net 200 g is below the minimum load 400 g "
                          "(20 e)") == "重量未稳定；净重 200 克低于最小称量 400 克（20 e）"


def test_a_sale_that_cannot_be_voided_or_corrected_is_said_in_chinese():
    from agent.station import sales

    zh = Language("zh-CN")
    voided = sales.Sale(7, "station-01-20261207-0001", "F-1", 52000, "2000.00", 0.0, None, None,
                        9)
    paid = sales.Sale(7, "station-01-20261207-0001", "F-1", 52000, "2000.00", 0.0, 1.0,
                      "PAY-77", None)
    said = []
    for sale in (voided, paid):
        for action in ("voided", "corrected"):
            try:
                sales.check_open(sale, action)
            except sales.SaleClosed as exc:
                assert known(str(exc)), str(exc)
                said.append(flow_words(zh, str(exc)))
    assert said == ["凭证 station-01-20261207-0001 已经作废",
                    "凭证 station-01-20261207-0001 已作废，不能更正",
                    "凭证 station-01-20261207-0001 银行已付款（PAY-77）：收购站不能再修改",
                    "凭证 station-01-20261207-0001 银行已付款（PAY-77）：收购站不能再修改"]

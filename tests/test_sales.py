"""Voucher numbers and sale records, drawn in the purchase event's own transaction."""

import threading
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from agent.contract.envelope import parse_json_object
from agent.contract.events import Draft
from agent.errors import OutboxFull
from agent.station import sales

BODY = {"farmer": {"farmer_id": "F-1", "card_uid": "04aa"}, "scale": {"net_g": "52340"},
        "amount": "2015.09"}
DAY = 1780300800.0  # 2026-06-01 08:00 UTC


def record(outbox, now=DAY, body=BODY):
    return outbox.append(Draft("purchase.recorded", "money", body),
                         within=sales.recorder("station-01", body, now=now))


def test_vouchers_count_per_day_and_go_into_the_event(make_outbox):
    ob = make_outbox()
    seqs = [record(ob), record(ob), record(ob, now=DAY + 86400)]
    events = [parse_json_object(s.payload) for s in ob.pending(10)]
    assert [e["body"]["voucher"] for e in events] == [
        "station-01-20260601-0001", "station-01-20260601-0002", "station-01-20260602-0001"]
    assert [sales.find(ob, seq=s).voucher for s in seqs] == [e["body"]["voucher"] for e in events]
    # the clock set back to an earlier day continues that day's counter
    record(ob, now=DAY + 60)
    assert sales.find(ob, seq=4).voucher == "station-01-20260601-0003"


def test_concurrent_sales_get_unique_vouchers_matching_their_seq(make_outbox):
    ob = make_outbox()
    out = []
    threads = [threading.Thread(target=lambda: out.extend(record(ob) for _ in range(20)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = {e["seq"]: e for e in (parse_json_object(s.payload) for s in ob.pending(1000))}
    vouchers = [e["body"]["voucher"] for e in events.values()]
    assert len(set(vouchers)) == 80
    for seq in out:
        assert sales.find(ob, seq=seq).voucher == events[seq]["body"]["voucher"]


def test_a_refused_sale_draws_no_number(make_outbox):
    ob = make_outbox(capacity_bytes=64 * 1024, alert_reserve_bytes=4096)
    big = {**BODY, "pad": "x" * 3000}
    with pytest.raises(OutboxFull):
        while True:
            record(ob, body=big)
    n = len(sales.since(ob, 0))
    assert sales.find(ob, seq=sales.since(ob, 0)[-1].seq).voucher.endswith(f"{n:04d}")


def test_paid_and_unknown(make_outbox):
    ob = make_outbox()
    record(ob)
    sale = sales.mark_paid(ob, "station-01-20260601-0001", "bank-ref-9")
    assert sale.payment_ref == "bank-ref-9" and sale.paid_at
    with pytest.raises(sales.SaleNotFound):
        sales.mark_paid(ob, "station-01-20260601-0999", "x")


# -- the station's local day ---------------------------------------------------------------

SHANGHAI = ZoneInfo("Asia/Shanghai")
MIDNIGHT = datetime(2026, 6, 2, 0, 0, tzinfo=SHANGHAI).timestamp()  # 2026-06-01 16:00 UTC


def test_the_voucher_day_rolls_over_at_local_midnight_not_utc(make_outbox):
    ob = make_outbox()
    for now in (MIDNIGHT - 8 * 3600 - 1, MIDNIGHT - 1, MIDNIGHT, MIDNIGHT + 8 * 3600):
        record(ob, now=now)
    assert [sales.find(ob, seq=s).voucher for s in (1, 2, 3, 4)] == [
        "station-01-20260601-0001",   # 07:59:59 in Shanghai (23:59:59 UTC the day before)
        "station-01-20260601-0002",   # 23:59:59 in Shanghai (15:59:59 UTC)
        "station-01-20260602-0001",   # 00:00 in Shanghai: a new day and a new counter
        "station-01-20260602-0002"]   # 08:00 in Shanghai (00:00 UTC): still the same day
    assert sales.day_of(MIDNIGHT - 1) == "20260601" and sales.day_of(MIDNIGHT) == "20260602"


def test_the_day_follows_the_configured_zone(make_outbox):
    ob = make_outbox()
    utc = ZoneInfo("UTC")
    ob.append(Draft("purchase.recorded", "money", BODY),
              within=sales.recorder("station-01", BODY, now=MIDNIGHT, tz=utc))
    assert sales.find(ob, seq=1).voucher == "station-01-20260601-0001"


def test_todays_sales_start_at_local_midnight(make_outbox):
    from agent.station.view import sale_lines, start_of_day

    ob = make_outbox()
    record(ob, now=MIDNIGHT - 60)       # yesterday, 23:59 local
    record(ob, now=MIDNIGHT + 60)       # today, 00:01 local
    assert start_of_day(MIDNIGHT + 3600) == MIDNIGHT
    assert start_of_day(MIDNIGHT - 1) == MIDNIGHT - 86400
    assert start_of_day(MIDNIGHT + 3600, tz=ZoneInfo("UTC")) == MIDNIGHT - 16 * 3600
    today = sale_lines(ob, start_of_day(MIDNIGHT + 3600))
    assert [line.voucher for line in today] == ["station-01-20260602-0001"]


def test_a_station_draws_vouchers_by_its_local_day(make_outbox):
    from agent.station import purchase as p
    from agent.station.effects import EffectRunner

    ob = make_outbox(device="station-01")
    wall = [MIDNIGHT - 30]
    station = EffectRunner("station-01", ob, write_card=lambda f, s: None, clock=lambda: 0.0,
                           tz=SHANGHAI, wall_clock=lambda: wall[0])
    farmer = p.Farmer("04aa", "cpu", "F-1", "Zhang San", "acct", 1)
    station.handle(p.StaffCard(p.Staff("s-01", "Clerk Li", "clerk")))
    for net in (52_340, 41_000):
        station.handle(p.ScaleUpdate(p.Weighing("scale-1", net + 60, 60, net, True, True)))
        station.handle(p.FarmerCard(farmer))
        station.handle(p.Graded(p.Priced("+1", Decimal("38.50"), Decimal("10.00"), {})))
        station.handle(p.Confirm())
        wall[0] = MIDNIGHT + 30
    assert [s.voucher for s in sales.since(ob, 0)] == ["station-01-20260601-0001",
                                                        "station-01-20260602-0001"]

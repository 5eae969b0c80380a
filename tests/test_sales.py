"""Voucher numbers and sale records, drawn in the purchase event's own transaction."""

import threading

import pytest

from agent import sales
from agent.envelope import parse_json_object
from agent.errors import OutboxFull
from agent.events import Draft

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

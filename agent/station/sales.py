"""The station's sales: voucher numbers and the sale records kept beside the events.

A voucher number is the device id, the station's local day and a counter for that day
(`station-01-20260601-0007`). It is drawn inside the transaction that makes the
`purchase.recorded` event durable, so a number exists if and only if its sale does, it is never
reused (not even after a power cut), and vouchers of different scales never collide because each
scale's agent has its own device id. If the clock is set back, the day's counter continues from
where it was, so numbers stay unique.

The day is the calendar day in the station's time zone (`[station] timezone`, by default
Asia/Shanghai), so the counter starts again at local midnight, not at midnight UTC (08:00 in
China), and "today's sales" are the local day's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo

from agent.errors import CocoonError


class SaleNotFound(CocoonError):
    """A payment confirmation or void names a sale this station never recorded."""


class SaleClosed(CocoonError):
    """A payment, void or correction names a sale that is already voided or paid."""


@dataclass(frozen=True)
class Sale:
    seq: int
    voucher: str
    farmer_id: str
    net_g: int
    amount: str
    created: float
    paid_at: float | None
    payment_ref: str | None
    voided_by: int | None


DEFAULT_TIMEZONE = "Asia/Shanghai"


def local_zone(name: str = DEFAULT_TIMEZONE) -> tzinfo:
    """The station's time zone by its IANA name (the tz database: Debian's tzdata, or the
    tzdata Python package where the system has none)."""
    return ZoneInfo(name)


def day_of(ts: float, tz: tzinfo | None = None) -> str:
    """The station's local day of a time stamp, YYYYMMDD."""
    return datetime.fromtimestamp(ts, tz or local_zone()).strftime("%Y%m%d")


def start_of_day(now: float | None = None, tz: tzinfo | None = None) -> float:
    """The time stamp of the last local midnight at or before `now`."""
    now = time.time() if now is None else now
    local = datetime.fromtimestamp(now, tz or local_zone())
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def recorder(device: str, body: dict, now: float | None = None,
             tz: tzinfo | None = None) -> Callable:
    """The `within` callback for a purchase: draws the voucher and stores the sale row.

    Returns the members to add to the event body. The voucher's day is `now`'s day in `tz`
    (the station's time zone).
    """
    now = time.time() if now is None else now
    tz = tz or local_zone()

    def within(execute, seq: int) -> dict:
        corrects = body.get("corrects")
        if corrects is not None:  # the new sale voids the one it corrects, atomically
            _void_in(execute, corrects["seq"], corrects["voucher"], seq, "corrected")
        day = day_of(now, tz)
        row = execute("SELECT last FROM vouchers WHERE day = ?", (day,)).fetchone()
        number = (row[0] if row else 0) + 1
        execute("INSERT INTO vouchers (day, last) VALUES (?, ?) "
                "ON CONFLICT(day) DO UPDATE SET last = excluded.last", (day, number))
        voucher = f"{device}-{day}-{number:04d}"
        execute(
            "INSERT INTO sales (seq, voucher, farmer_id, card_uid, net_g, amount, created,"
            " grade) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, voucher, body["farmer"]["farmer_id"], body["farmer"]["card_uid"],
             int(body["scale"]["net_g"]), body["amount"], now, body.get("grade")))
        return {"voucher": voucher}

    return within


def _sale(row) -> Sale:
    return Sale(*row)


_COLUMNS = "seq, voucher, farmer_id, net_g, amount, created, paid_at, payment_ref, voided_by"


def find(outbox, *, seq: int | None = None, voucher: str | None = None) -> Sale:
    if seq is not None:
        rows = outbox.read(f"SELECT {_COLUMNS} FROM sales WHERE seq = ?", (seq,))
    else:
        rows = outbox.read(f"SELECT {_COLUMNS} FROM sales WHERE voucher = ?", (voucher,))
    if not rows:
        raise SaleNotFound(f"no sale {voucher or seq} at this station")
    return _sale(rows[0])


def recorded_at(outbox, body: dict, created: float) -> Sale | None:
    """The sale of `body` whose row was written at `created` (the time the station gave its
    recorder), if it is stored: the look that follows an append the outbox could not vouch
    for (OutboxUncertain)."""
    rows = outbox.read(f"SELECT {_COLUMNS} FROM sales WHERE card_uid = ? AND created = ? "
                       "AND amount = ?", (body["farmer"]["card_uid"], created, body["amount"]))
    return _sale(rows[0]) if rows else None


def since(outbox, ts: float) -> list[Sale]:
    return [_sale(r) for r in outbox.read(
        f"SELECT {_COLUMNS} FROM sales WHERE created >= ? ORDER BY seq", (ts,))]


def mark_paid(outbox, voucher: str, payment_ref: str, paid_at: float | None = None) -> Sale:
    """Mark a sale paid, unless it is voided or already paid (SaleClosed says which).

    The check and the update are one statement, so a void recorded at the same moment cannot
    slip between them.
    """
    find(outbox, voucher=voucher)
    changed = outbox.write(
        "UPDATE sales SET paid_at = ?, payment_ref = ? "
        "WHERE voucher = ? AND voided_by IS NULL AND paid_at IS NULL",
        [(paid_at or time.time(), payment_ref, voucher)])
    sale = find(outbox, voucher=voucher)
    if not changed:
        check_open(sale, "paid")
    return sale


def check_open(sale: Sale, action: str) -> None:
    """Raise SaleClosed unless the sale is neither voided nor paid."""
    if sale.voided_by:
        raise SaleClosed(f"voucher {sale.voucher} was voided (by seq {sale.voided_by}); "
                         f"it cannot be {action}")
    if sale.paid_at:
        raise SaleClosed(f"voucher {sale.voucher} is already paid by the bank "
                         f"({sale.payment_ref}); it cannot be {action}")


def keep_voucher(outbox, voucher: dict) -> None:
    """Keep the voucher as printed, to print it again (marked as a copy) on request."""
    outbox.write("UPDATE sales SET voucher_doc = ? WHERE voucher = ?",
                 [(json.dumps(voucher, sort_keys=True, ensure_ascii=False),
                   voucher["voucher"])])


def kept_voucher(outbox, voucher: str) -> dict:
    """The voucher as first printed; SaleNotFound if there is no such sale or copy."""
    rows = outbox.read("SELECT voucher_doc FROM sales WHERE voucher = ?", (voucher,))
    if not rows:
        raise SaleNotFound(f"no sale {voucher} at this station")
    if rows[0][0] is None:
        raise SaleNotFound(f"no copy of voucher {voucher} is kept (it was recorded by an "
                           "earlier release)")
    return json.loads(rows[0][0])


def day_report(outbox, device: str, day: str) -> dict:
    """The end-of-day report of the station's local `day` (YYYYMMDD): the sales whose voucher
    carries that day, with count, net weight and amount in all and per grade (voided sales
    apart), how many the bank has acknowledged and paid. Amounts are exact decimal strings."""
    rows = outbox.read("SELECT seq, grade, net_g, amount, voided_by, paid_at FROM sales "
                       "WHERE voucher LIKE ? ESCAPE '\\' ORDER BY seq",
                       (_like_prefix(f"{device}-{day}-"),))
    acked = outbox.acked_seq()
    kept = [r for r in rows if r[4] is None]
    grades: dict[str, list] = {}
    for _seq, grade, net_g, amount, _voided, _paid in kept:
        g = grades.setdefault(grade or "?", [0, 0, Decimal(0)])
        g[0], g[1], g[2] = g[0] + 1, g[1] + net_g, g[2] + Decimal(amount)
    return {
        "day": day,
        "count": len(kept),
        "net_g": str(sum(r[2] for r in kept)),
        "amount": str(sum((Decimal(r[3]) for r in kept), Decimal("0.00"))),
        "by_grade": [{"grade": g, "count": c, "net_g": str(n), "amount": str(a)}
                     for g, (c, n, a) in sorted(grades.items())],
        "voided": len(rows) - len(kept),
        "acknowledged": sum(1 for r in kept if r[0] <= acked),
        "paid": sum(1 for r in kept if r[5] is not None),
        "first_seq": rows[0][0] if rows else None,
        "last_seq": rows[-1][0] if rows else None,
    }


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def owe_card(outbox, seq: int, card_sale: dict) -> None:
    """Keep a sale the card could not take, to write it at the card's next swipe."""
    find(outbox, seq=seq)
    outbox.write("UPDATE sales SET card_owed = ? WHERE seq = ?",
                 [(json.dumps(card_sale, sort_keys=True), seq)])


def owed_to_card(outbox, card_uid: str) -> list[tuple[int, dict]]:
    """(seq, card sale) of the sales still owed to this card, oldest first."""
    return [(seq, json.loads(owed)) for seq, owed in outbox.read(
        "SELECT seq, card_owed FROM sales WHERE card_uid = ? AND card_owed IS NOT NULL "
        "ORDER BY seq", (card_uid,))]


def card_settled(outbox, seq: int) -> None:
    outbox.write("UPDATE sales SET card_owed = NULL WHERE seq = ?", [(seq,)])


def voider(seq: int, voucher: str) -> Callable:
    """The `within` callback for `purchase.voided`: marks the sale voided by the void's own
    seq in the event's transaction, or raises (nothing stored) if the sale is unknown, already
    voided or paid."""

    def within(execute, void_seq: int) -> None:
        _void_in(execute, seq, voucher, void_seq, "voided")

    return within


def _void_in(execute, seq: int, voucher: str, by_seq: int, action: str) -> None:
    row = execute(f"SELECT {_COLUMNS} FROM sales WHERE seq = ?", (seq,)).fetchone()
    if row is None or row[1] != voucher:
        raise SaleNotFound(f"no sale {voucher} (seq {seq}) at this station")
    check_open(_sale(row), action)
    execute("UPDATE sales SET voided_by = ? WHERE seq = ?", (by_seq, seq))

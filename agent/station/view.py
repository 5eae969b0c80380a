"""What the clerk sees: a snapshot of the station and its pure text rendering.

`snapshot()` gathers the state (who is signed in, whose card, the live weight, the price, the
last message, the link, today's sales with their sent / acknowledged / paid state) and
`render()` turns it into the screen's text. Rendering is a pure function of the snapshot, so
the screen is tested without a terminal, and the same text serves a terminal, a log or a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo

from agent.station import purchase as p
from agent.station import sales


@dataclass(frozen=True)
class SaleLine:
    voucher: str
    farmer_id: str
    net_g: int
    amount: str
    state: str          # queued, sent, acknowledged, paid, voided


@dataclass(frozen=True)
class StationView:
    device: str
    phase: str
    clerk: str | None
    farmer: str | None
    weighing: p.Weighing | None
    priced: p.Priced | None
    message: str
    online: bool
    queued: int
    sales: tuple[SaleLine, ...] = field(default_factory=tuple)


def sale_lines(outbox, since_ts: float) -> tuple[SaleLine, ...]:
    """Today's sales, each with how far it has got on its way to the bank."""
    acked = outbox.acked_seq()
    sent = {seq for (seq,) in outbox.read("SELECT seq FROM events WHERE state = 1")}
    lines = []
    for sale in sales.since(outbox, since_ts):
        if sale.voided_by:
            state = "voided"
        elif sale.paid_at:
            state = "paid"
        elif sale.seq <= acked:
            state = "acknowledged"
        elif sale.seq in sent:
            state = "sent"
        else:
            state = "queued"
        lines.append(SaleLine(sale.voucher, sale.farmer_id, sale.net_g, sale.amount, state))
    return tuple(lines)


def start_of_day(now: float | None = None, tz: tzinfo | None = None) -> float:
    """Where "today's sales" start: the last midnight in the station's time zone."""
    return sales.start_of_day(now, tz)


def _kg(grams: int | None) -> str:
    if grams is None:
        return "-"
    sign = "-" if grams < 0 else ""
    return f"{sign}{abs(grams) // 1000}.{abs(grams) % 1000:03d}"


def render(view: StationView, *, max_sales: int = 8) -> str:
    w = view.weighing
    if w is None:
        weight = "scale silent"
    else:
        stable = "STABLE" if w.stable else "moving"
        weight = (f"gross {_kg(w.gross_g)} kg  tare {_kg(w.tare_g)} kg  net {_kg(w.net_g)} kg"
                  f"  {stable}" + ("" if w.sale_ok or not w.reason else f"  ({w.reason})"))
    price = "-"
    if view.priced is not None:
        price = (f"grade {view.priced.grade_label}  {view.priced.unit_price} yuan/kg  "
                 f"amount {view.priced.amount} yuan")
    link = "online" if view.online else f"OFFLINE, {view.queued} events queued safely"
    lines = [
        f"cocoon station {view.device}    link: {link}",
        f"clerk:  {view.clerk or '- (swipe a staff card)'}",
        f"farmer: {view.farmer or '-'}",
        f"scale:  {weight}",
        f"price:  {price}",
        f"step:   {view.phase}",
        f">> {view.message}" if view.message else ">>",
        "",
        f"today's sales ({len(view.sales)}):",
    ]
    for sale in view.sales[-max_sales:]:
        lines.append(f"  {sale.voucher:<28} {sale.farmer_id:<16} {_kg(sale.net_g):>9} kg "
                     f"{sale.amount:>10} yuan  {sale.state}")
    lines.append("")
    lines.append("keys: g shell_g=9.6 moisture_pct=15 (grade)  c confirm  x cancel  "
                 "v VOUCHER reason (void)  r VOUCHER reason (correct)  o sign out  q quit")
    return "\n".join(lines)

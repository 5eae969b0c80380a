"""The monitor's view: lots (each its own tags), pledges (pledged against present counts over
all their lots), open alerts, climate, readers.

`load_view` reads the state the running service keeps in warehouse.sqlite (read-only, so the
view can run beside the agent); `render` is a pure function of that view, tested directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from agent.warehouse.store import WarehouseStore


@dataclass(frozen=True)
class LotLine:
    """One lot's own tags, by state."""

    lot: str
    pledge: str | None
    bound: int
    present: int
    unknown: int
    departed: int


@dataclass(frozen=True)
class PledgeLine:
    """One pledge over all its lots: the bank's pledged count against what is in stock."""

    pledge: str
    lots: tuple[str, ...]
    pledged: int             # tags pledged
    released: int            # tags released since
    present: int             # over all its lots
    unknown: int             # in stock while their reader is down

    @property
    def required(self) -> int:
        return max(0, self.pledged - self.released)

    @property
    def missing(self) -> int:
        """Tags required by the pledge and neither present nor unknown."""
        return max(0, self.required - self.present - self.unknown)

    @property
    def state(self) -> str:
        missing = self.missing
        if missing > 0:
            return f"SHORT by {missing}"
        return "ok (some unknown)" if self.unknown else "ok"


@dataclass(frozen=True)
class View:
    device: str
    lots: tuple[LotLine, ...]
    pledges: tuple[PledgeLine, ...]
    alerts: tuple[tuple[str, str, float], ...]        # (kind, detail, opened unix time)
    climate: tuple | None                              # (temp_c, rh_pct, band, error, updated)
    readers: tuple[tuple[str, str, str], ...]          # (name, down_reason, detail)
    pending_receipts: int


def load_view(path: Path, device: str) -> View:
    store = WarehouseStore(path, readonly=True)
    try:
        status = dict(store.rows("SELECT epc, status FROM tags"))
        lots = {lot: [status.get(e, "") for e in json.loads(epcs)]
                for lot, epcs in store.rows("SELECT lot, epcs FROM lots ORDER BY lot")}
        pledge_of, pledges = {}, []
        for pid, pledged_lots, tags, released in store.rows(
                "SELECT id, lots, tags, released_tags FROM pledges ORDER BY id"):
            names = tuple(json.loads(pledged_lots))
            states = [st for lot in names for st in lots.get(lot, [])]
            pledges.append(PledgeLine(pid, names, tags, released, states.count("present"),
                                      states.count("unknown")))
            pledge_of.update(dict.fromkeys(names, pid))
        lines = tuple(LotLine(lot, pledge_of.get(lot), len(states), states.count("present"),
                              states.count("unknown"), states.count("departed"))
                      for lot, states in lots.items())
        alerts = tuple((kind, detail, opened) for _, kind, detail, opened in store.open_alerts())
        pending = store.rows("SELECT COUNT(*) FROM receipts WHERE done = 0")[0][0]
        return View(device, lines, tuple(pledges), alerts, store.load_climate(),
                    tuple(store.load_readers()), pending)
    finally:
        store.close()


def render(view: View, now: datetime, width: int = 100) -> str:
    out = [f"warehouse {view.device}   {now.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC",
           "=" * min(width, 100), ""]
    out.append("LOTS")
    if not view.lots:
        out.append("  (no lot received yet)")
    else:
        out.append(f"  {'lot':20} {'pledge':14} {'tags':>5} {'present':>7} {'unknown':>7} "
                   f"{'gone':>5}")
        for line in view.lots:
            out.append(f"  {line.lot[:20]:20} {(line.pledge or '-')[:14]:14} {line.bound:>5} "
                       f"{line.present:>7} {line.unknown:>7} {line.departed:>5}")
    if view.pending_receipts:
        out.append(f"  {view.pending_receipts} receipt(s) waiting for the agent")
    out += ["", "PLEDGES"]
    if not view.pledges:
        out.append("  none")
    else:
        out.append(f"  {'pledge':14} {'lots':>4} {'pledged':>7} {'released':>8} "
                   f"{'present':>7} {'unknown':>7}  state")
        for p in view.pledges:
            out.append(f"  {p.pledge[:14]:14} {len(p.lots):>4} {p.pledged:>7} {p.released:>8} "
                       f"{p.present:>7} {p.unknown:>7}  {p.state}")
    if view.pending_receipts:
        out.append(f"  {view.pending_receipts} receipt(s) waiting for the agent")
    out += ["", f"OPEN ALERTS ({len(view.alerts)})"]
    if not view.alerts:
        out.append("  none")
    for kind, detail, opened in view.alerts:
        age = _age(now.timestamp() - opened)
        out.append(f"  ! {kind:22} {detail[:60]:60} {age:>8}")
    out += ["", "CLIMATE"]
    c = view.climate
    if c is None:
        out.append("  no reading yet")
    elif c[3]:
        out.append(f"  SENSOR FAULT: {c[3][:80]}")
    else:
        band = {"ok": "in range", "high": "TOO HUMID", "low": "TOO DRY"}.get(c[2], c[2])
        out.append(f"  {c[0]} C   {c[1]} % RH   {band}   ({_age(now.timestamp() - c[4])} ago)")
    out += ["", "READERS"]
    if not view.readers:
        out.append("  none reported yet")
    for name, reason, detail in view.readers:
        out.append(f"  {name:20} " + (f"DOWN ({reason}) {detail[:60]}" if reason else "online"))
    return "\n".join(out) + "\n"


def _age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h"

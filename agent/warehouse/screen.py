"""The monitor's view: lots (each its own tags), pledges (pledged against present counts over
all their lots), open alerts, climate, readers.

`load_view` reads the state the running service keeps in warehouse.sqlite (read-only, so the
view can run beside the agent); `render` is a pure function of that view, tested directly.
"""

from __future__ import annotations

import json
import textwrap
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
    alive: float | None = None     # when the running agent last said it runs (unix time)


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
        alive = store.meta("alive")
        return View(device, lines, tuple(pledges), alerts, store.load_climate(),
                    tuple(store.load_readers()), pending,
                    float(alive) if alive is not None else None)
    finally:
        store.close()


STALE_S = 20.0   # the agent's housekeeping notes every 5 s that it runs; 4 missed: stopped


def stale_for(view: View, now: datetime) -> float | None:
    """Seconds since the running agent last said it runs, when that is too long (None: it
    runs, or this store predates the note)."""
    if view.alive is None:
        return None
    quiet = now.timestamp() - view.alive
    return quiet if quiet > STALE_S else None


def render(view: View, now: datetime, width: int = 100) -> str:
    """The view as text `width` columns wide: ids are never cut (their columns are as wide as
    the longest), long details wrap onto the next lines."""
    width = max(40, width)
    out = _wrap(f"warehouse {view.device}   {now.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} "
                "UTC", width, "", "  ") + ["=" * width, ""]
    quiet = stale_for(view, now)
    if quiet is not None:
        since = datetime.fromtimestamp(view.alive, timezone.utc)
        out += _wrap(f"!! THE AGENT IS STOPPED: no report since {since:%Y-%m-%d %H:%M:%S} UTC "
                     f"({_age(quiet)} ago). What follows may be out of date; start the agent "
                     "(systemctl start cocoon-agent) or call the technician.", width, "", "   ")
        out.append("")
    out.append("LOTS")
    lot_w = max([20] + [len(x.lot) for x in view.lots])
    pledge_w = max([14] + [len(x.pledge or "") for x in view.lots] +
                   [len(p.pledge) for p in view.pledges])
    if not view.lots:
        out.append("  (no lot received yet)")
    elif 2 + lot_w + pledge_w + 30 <= width:
        out.append(f"  {'lot':{lot_w}} {'pledge':{pledge_w}} {'tags':>5} {'present':>7} "
                   f"{'unknown':>7} {'gone':>5}")
        for line in view.lots:
            out.append(f"  {line.lot:{lot_w}} {line.pledge or '-':{pledge_w}} {line.bound:>5} "
                       f"{line.present:>7} {line.unknown:>7} {line.departed:>5}")
    else:       # too narrow for the table: each lot on lines of its own
        for line in view.lots:
            out += _pack([line.lot, f"pledge {line.pledge or '-'}", f"tags {line.bound}",
                          f"present {line.present}", f"unknown {line.unknown}",
                          f"gone {line.departed}"], width)
    if view.pending_receipts:
        out.append(f"  {view.pending_receipts} receipt(s) waiting for the agent")
    out += ["", "PLEDGES"]
    if not view.pledges:
        out.append("  none")
    elif 2 + pledge_w + 57 <= width:
        out.append(f"  {'pledge':{pledge_w}} {'lots':>4} {'pledged':>7} {'released':>8} "
                   f"{'present':>7} {'unknown':>7}  state")
        for p in view.pledges:
            out.append(f"  {p.pledge:{pledge_w}} {len(p.lots):>4} {p.pledged:>7} "
                       f"{p.released:>8} {p.present:>7} {p.unknown:>7}  {p.state}")
    else:
        for p in view.pledges:
            out += _pack([p.pledge, f"lots {len(p.lots)}", f"pledged {p.pledged}",
                          f"released {p.released}", f"present {p.present}",
                          f"unknown {p.unknown}", p.state], width)
    out += ["", f"OPEN ALERTS ({len(view.alerts)})"]
    if not view.alerts:
        out.append("  none")
    for kind, detail, opened in view.alerts:
        age = _age(now.timestamp() - opened)
        out += _wrap(f"! {kind:22} {detail}   ({age} ago)", width, "  ", "    ")
    out += ["", "CLIMATE"]
    c = view.climate
    if c is None:
        out.append("  no reading yet")
    elif c[3]:
        out += _wrap(f"SENSOR FAULT: {c[3]}", width, "  ", "    ")
    else:
        band = {"ok": "in range", "high": "TOO HUMID", "low": "TOO DRY"}.get(c[2], c[2])
        out.append(f"  {c[0]} C   {c[1]} % RH   {band}   ({_age(now.timestamp() - c[4])} ago)")
    out += ["", "READERS"]
    if not view.readers:
        out.append("  none reported yet")
    name_w = max([20] + [len(r[0]) for r in view.readers])
    for name, reason, detail in view.readers:
        out += _wrap(f"{name:{name_w}} " + (f"DOWN ({reason}) {detail}" if reason else "online"),
                     width, "  ", "    ")
    return "\n".join(out) + "\n"


def _pack(chunks: list[str], width: int) -> list[str]:
    """A row too wide for its table: its labelled values, packed whole onto indented lines."""
    lines = ["  " + chunks[0]]
    for chunk in chunks[1:]:
        if len(lines[-1]) + 2 + len(chunk) <= width:
            lines[-1] += "  " + chunk
        else:
            lines.append("      " + chunk)
    return lines


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    """`text` over lines of `width`, words kept whole (an id longer than a line stays whole)."""
    return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest,
                         break_long_words=False, break_on_hyphens=False) or [first.rstrip()]


def _age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h"

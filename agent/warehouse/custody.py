"""Custody of pledged lots: what may leave, and what must be reported when it does anyway.

A pure state machine over lots (bound to their tags when received), the bank's pledges and the
bank's release authorisations. It is told about departures and arrivals by the service (which
gets them from presence) and answers with event drafts; wall-clock time is passed in, since a
release's validity window is in the bank's time.

- A pledged tag that departs under a valid release (its lot, quantity left, and its window
  open when the tag was last read) uses up one tag of it; without one it is a
  `custody.breach`.
- A pledge whose lots hold fewer tags (present or unknown) than pledged and not yet released
  raises `custody.shortfall` once, and `custody.restored` when the stock is back.

Tags stand in for weight. A reader tells whether a bale's tag is in the store, never what the
bale weighs, and a lot's `kg` is one figure for the whole lot (optional at receipt), not a
weight per tag. So the quantity watched is the pledge's `tags`; its `kg` and a release's `kg`
are recorded and reported for the bank's books (docs/warehouse.md), never compared with stock:
a kilogram check here could only be the tag count times an average bale weight, wrong
whenever bales differ, raising or hiding alerts on an estimate.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

from agent.contract.clock import parse_utc_timestamp, utc_timestamp
from agent.contract.events import Draft
from agent.errors import CocoonError

LOT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
EPC_RE = re.compile(r"^(?:[0-9a-f]{2}){1,62}$")
KG_RE = re.compile(r"^\d{1,9}(\.\d{1,3})?$")


class CustodyError(CocoonError):
    """A receipt, pledge or release that cannot be accepted; the message says why."""


@dataclass
class Lot:
    id: str
    purchases: tuple[str, ...]
    epcs: frozenset[str]
    kg: str | None = None


@dataclass
class Pledge:
    id: str
    lots: tuple[str, ...]
    tags: int
    kg: str
    released_tags: int = 0
    short: bool = False

    @property
    def required(self) -> int:
        return max(0, self.tags - self.released_tags)


@dataclass
class Release:
    id: str
    lot: str
    tags: int
    not_before: datetime
    not_after: datetime
    kg: str | None = None
    used: int = 0

    def valid_at(self, now: datetime) -> bool:
        return self.not_before <= now <= self.not_after and self.used < self.tags


@dataclass
class Custody:
    lots: dict[str, Lot] = field(default_factory=dict)
    pledges: dict[str, Pledge] = field(default_factory=dict)
    releases: dict[str, Release] = field(default_factory=dict)

    def __post_init__(self):
        self._lot_of = {e: lot.id for lot in self.lots.values() for e in lot.epcs}

    # -- inputs ---------------------------------------------------------------------------

    def receive(self, lot_id: str, purchases: Iterable[str], epcs: Iterable[str],
                kg: str | None = None) -> Draft:
        """Bind a received lot to its tags; the draft is the `lot.received` record."""
        lot_id = _lot_id(lot_id)
        if lot_id in self.lots:
            raise CustodyError(f"lot {lot_id} was already received")
        purchases = tuple(purchases)
        if not purchases or not all(isinstance(p, str) and p for p in purchases):
            raise CustodyError(f"lot {lot_id}: name the purchase events it comes from "
                               "(e.g. station-01/42)")
        tags = sorted({_epc(e) for e in epcs})
        if not tags:
            raise CustodyError(f"lot {lot_id}: no tags given")
        taken = [e for e in tags if e in self._lot_of]
        if taken:
            raise CustodyError(f"lot {lot_id}: tag {taken[0]} already belongs to lot "
                               f"{self._lot_of[taken[0]]}")
        if kg is not None:
            kg = _kg(kg, "kg")
        self.lots[lot_id] = Lot(lot_id, purchases, frozenset(tags), kg)
        self._lot_of.update(dict.fromkeys(tags, lot_id))
        body = {"lot": lot_id, "purchases": list(purchases), "tags": tags, "count": len(tags),
                "epcs_sha256": _digest(tags)}
        if kg is not None:
            body["kg"] = kg
        return Draft("lot.received", "alert", body)

    def pledge(self, command_id: str, body: dict) -> dict:
        """The bank's `pledge` (also accepted as `pledge.create`): body `lots` (ids), `tags`
        (int), `kg` (decimal string), optionally `pledge` (the bank's id; default the
        command's id)."""
        pledge_id = body.get("pledge", command_id)
        if not isinstance(pledge_id, str) or not pledge_id:
            raise CustodyError("pledge: `pledge` must be a non-empty string")
        if pledge_id in self.pledges:
            raise CustodyError(f"pledge {pledge_id} already exists")
        lots = body.get("lots")
        if not isinstance(lots, list) or not lots or not all(isinstance(x, str) for x in lots):
            raise CustodyError("pledge: `lots` must be a non-empty list of lot ids")
        unknown = [x for x in lots if x not in self.lots]
        if unknown:
            raise CustodyError(f"pledge: lot {unknown[0]} was never received here")
        for other in self.pledges.values():
            shared = set(other.lots) & set(lots)
            if shared:
                raise CustodyError(f"lot {sorted(shared)[0]} is already pledged "
                                   f"under pledge {other.id}")
        tags = body.get("tags")
        total = sum(len(self.lots[x].epcs) for x in lots)
        if isinstance(tags, bool) or not isinstance(tags, int) or not 0 < tags <= total:
            raise CustodyError(f"pledge: `tags` must be an integer from 1 to {total} "
                               "(the tags of the lots named)")
        kg = _kg(body.get("kg"), "pledge: `kg`")
        self.pledges[pledge_id] = Pledge(pledge_id, tuple(lots), tags, kg)
        return {"pledge": pledge_id, "lots": list(lots), "tags": tags, "kg": kg}

    def authorize_release(self, command_id: str, body: dict, now: datetime) -> dict:
        """The bank's `release.authorize`: body `lot`, `tags` (int), `not_before`,
        `not_after` (RFC 3339 UTC), optionally `kg`. A window already over is refused; one
        that has not begun is kept and takes effect when it begins."""
        lot = body.get("lot")
        if not isinstance(lot, str) or lot not in self.lots:
            raise CustodyError(f"release.authorize: lot {lot!r} was never received here")
        pledge = self.pledge_of(lot)
        if pledge is None:
            raise CustodyError(f"release.authorize: lot {lot} is not pledged; its goods may "
                               "leave without a release")
        tags = body.get("tags")
        if isinstance(tags, bool) or not isinstance(tags, int) or tags < 1:
            raise CustodyError("release.authorize: `tags` must be a positive integer")
        try:
            not_before = parse_utc_timestamp(body["not_before"])
            not_after = parse_utc_timestamp(body["not_after"])
        except (KeyError, TypeError, ValueError):
            raise CustodyError("release.authorize: `not_before` and `not_after` must be RFC "
                               "3339 UTC timestamps like 2026-06-01T08:00:00.000000Z") from None
        if not_after <= not_before:
            raise CustodyError("release.authorize: the window ends before it begins")
        if not_after <= now:
            raise CustodyError(f"release.authorize: the window ended at {body['not_after']}")
        kg = _kg(body["kg"], "release.authorize: `kg`") if "kg" in body else None
        self.releases[command_id] = Release(command_id, lot, tags, not_before, not_after, kg)
        result = {"release": command_id, "lot": lot, "tags": tags, "pledge": pledge.id,
                  "not_before": utc_timestamp(not_before), "not_after": utc_timestamp(not_after)}
        if kg is not None:
            result["kg"] = kg       # recorded for the bank's books; tags are what is watched
        return result

    def departed(self, epc: str, location: str, unread_s: int, last_seen: datetime) -> Draft:
        """A tag that has departed; `last_seen` is the wall-clock time it was last read, at
        which a release must have been valid (its window open, tags left) to cover it."""
        lot_id = self._lot_of.get(epc)
        body = {"epc": epc, "location": location, "unread_s": unread_s}
        if lot_id is None:
            return Draft("tag.departed", "telemetry", body)
        body["lot"] = lot_id
        pledge = self.pledge_of(lot_id)
        if pledge is None:
            return Draft("tag.departed", "alert", body)
        body["pledge"] = pledge.id
        release = next((r for r in self.releases.values()
                        if r.lot == lot_id and r.valid_at(last_seen)), None)
        if release is None:
            return Draft("custody.breach", "alert", {
                **body, "reason": "a pledged tag left without a valid release"})
        release.used += 1
        pledge.released_tags += 1
        return Draft("tag.departed", "alert", {**body, "release": release.id,
                                               "release_left": release.tags - release.used})

    def arrived(self, epc: str, location: str, returned: bool) -> Draft:
        lot_id = self._lot_of.get(epc)
        body = {"epc": epc, "location": location, "returned": returned}
        if lot_id is None:
            return Draft("tag.arrived", "telemetry", body)
        return Draft("tag.arrived", "alert" if returned else "telemetry", {**body, "lot": lot_id})

    def check_stock(self, in_stock: Callable[[str], bool]) -> list[Draft]:
        """Compare each pledge with its lots' tags in stock (present, or unknown while a
        reader is down): one alert when it falls short, one when it is restored."""
        drafts = []
        for p in self.pledges.values():
            count = sum(1 for lot in p.lots for e in self.lots[lot].epcs if in_stock(e))
            body = {"pledge": p.id, "lots": list(p.lots), "required_tags": p.required,
                    "in_stock_tags": count, "pledged_tags": p.tags, "pledged_kg": p.kg}
            if count < p.required and not p.short:
                p.short = True
                drafts.append(Draft("custody.shortfall", "alert", body))
            elif count >= p.required and p.short:
                p.short = False
                drafts.append(Draft("custody.restored", "alert", body))
        return drafts

    # -- queries --------------------------------------------------------------------------

    def lot_of(self, epc: str) -> str | None:
        return self._lot_of.get(epc)

    def pledge_of(self, lot_id: str) -> Pledge | None:
        return next((p for p in self.pledges.values() if lot_id in p.lots), None)


def snapshot_digest(epcs: Iterable[str]) -> str:
    return _digest(sorted(epcs))


def _digest(sorted_epcs: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(sorted_epcs).encode("ascii")).hexdigest()


def _lot_id(value) -> str:
    if not isinstance(value, str) or not LOT_RE.match(value):
        raise CustodyError(f"lot id {value!r}: use 1-64 letters, digits and . _ : / -")
    return value


def _epc(value) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if not isinstance(text, str) or not EPC_RE.match(text):
        raise CustodyError(f"EPC {value!r}: expected hexadecimal of whole bytes")
    return text


def _kg(value, what: str) -> str:
    if not isinstance(value, str) or not KG_RE.match(value):
        raise CustodyError(f"{what} must be a decimal string of kilograms like \"1250.5\"")
    try:
        if Decimal(value) <= 0:
            raise CustodyError(f"{what} must be above zero")
    except InvalidOperation:
        raise CustodyError(f"{what}: {value!r} is not a number") from None
    return value

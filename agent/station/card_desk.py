"""The station's card reader: cards in, purchase-flow inputs out, sales written back.

Runs at the I/O edge between the PC/SC drivers and the purchase flow. On every card inserted in
the station's reader it decides, once, what the card is and whether it may be used:

- a staff card (clerk or supervisor) whose issuer signature verifies -> `StaffCard`;
- a farmer card, CPU or MIFARE Classic, whose issuer signature verifies, which is not on the
  backend's blacklist, and which (a CPU card) answers a fresh authentication challenge ->
  `FarmerCard`, after any sale still owed to the card (a write that failed when the card was
  pulled out) has been written to it;
- anything else -> `CardRefused` with the reason in plain words, and forged or blocked cards
  are also reported to the bank as a `card.refused` alert.

The challenge follows `[card] auth`: "psam" (the default), a mutual authentication of every
CPU card, farmer's or staff's, with keys diversified from the master keys of the PSAM in the
reader's SAM slot (INTERNAL then EXTERNAL AUTHENTICATE, drivers/pcsc/card_auth.py); "ed25519",
the card's own key pair where it has one; "none". A MIFARE card cannot be challenged: it is
accepted unless `allow_m1` is off, and marked on screen as the weaker kind (`notices`). Past
the blacklist's refusal age no farmer card is accepted: no new sale until a fresh list comes.

The card stays connected while it is in the reader, so the station can append the sale to it
after the purchase is recorded (`write_card`). One lock serialises the monitor thread (reading)
and the station thread (writing): a card is never talked to by two threads at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime, tzinfo

from agent.contract.events import Draft
from agent.errors import EXPECTED, CocoonError
from agent.station import purchase as p
from agent.station import sales
from agent.station.card_messages import message
from drivers.pcsc import (
    ApduTransport,
    CardInserted,
    CardRemoved,
    CardWithdrawn,
    PcscError,
    ReaderRemoved,
    ServiceLost,
)
from drivers.pcsc import farmer_card as fc
from drivers.pcsc import staff_card as sc
from drivers.pcsc.card_auth import challenge_card, psam_authenticate
from drivers.pcsc.psam import Psam, PsamError

log = logging.getLogger(__name__)


class CardWriteError(CocoonError):
    """The sale could not be appended to the farmer's card (it will be at the next swipe)."""


class CardDesk:
    def __init__(self, *, reader: str, issuer_verifier, outbox, submit: Callable[[object], None],
                 blacklist, m1_master_key: bytes | None = None, require_card_key: bool = False,
                 auth: str = "psam", sam_reader: str = "", allow_m1: bool = True,
                 blacklist_max_age_h: float = 24, blacklist_refuse_age_h: float = 72,
                 open_transport: Callable[[str], ApduTransport] = ApduTransport.open,
                 list_readers: Callable[[], list[str]] | None = None,
                 tz: tzinfo | None = None):
        if auth not in ("psam", "ed25519", "none"):
            raise ValueError(f"card authentication {auth!r}: expected psam, ed25519 or none")
        self.reader = reader                # a part of the reader's name; "" = the first one
        self.issuer_verifier = issuer_verifier
        self.outbox = outbox
        self.submit = submit
        self.blacklist = blacklist
        self.m1_master_key = m1_master_key
        self.require_card_key = require_card_key   # [card] internal_authenticate (ed25519)
        self.auth = auth                    # [card] auth
        self.sam_reader = sam_reader        # [card] sam_reader; "" = any reader but ours
        self.allow_m1 = allow_m1
        self.blacklist_ages = (blacklist_max_age_h, blacklist_refuse_age_h)
        self._open = open_transport
        if list_readers is None:
            from drivers.pcsc import list_readers
        self._list_readers = list_readers
        self._psam: Psam | None = None      # the PSAM session, opened at the first challenge
        self._psam_reader: str | None = None
        self._said_no_list = False
        self.tz = tz or sales.local_zone()  # a sale's date on the card is the station's day
        self._lock = threading.Lock()
        self._transport: ApduTransport | None = None
        self._reader_name: str | None = None   # the reader we settled on
        self._farmer: p.Farmer | None = None   # the farmer card in the reader, if any
        self._ghost_pending = False            # a withdrawal was ignored: so is its insertion

    # -- monitor events (monitor thread) --------------------------------------------------

    def observe(self, event) -> None:
        """A CardMonitor observer."""
        if isinstance(event, (CardWithdrawn, CardInserted)) and self._ghost(event):
            return
        if isinstance(event, CardInserted) and self._ours(event.reader):
            self.submit(self.inserted(event.reader, event.atr))
        elif isinstance(event, ServiceLost) or (
                isinstance(event, (CardWithdrawn, ReaderRemoved))
                and event.reader == self._reader_name):
            self.withdrawn()

    def _ghost(self, event) -> bool:
        """A withdrawal (and the insertion after it) that did not happen: pcscd's event
        counter for a reader can move while a card stays in, which looks like a quick swap.
        The card's own connection tells: a card taken out (even if it came straight back)
        invalidates it, so while it still answers, the card never left."""
        if event.reader != self._reader_name:
            return False
        if isinstance(event, CardInserted):
            ghost, self._ghost_pending = self._ghost_pending, False
            return ghost and self._connected()
        if self._connected():
            log.debug("card in %s reported removed but still connected: ignored", event.reader)
            self._ghost_pending = True
            return True
        return False

    def _connected(self) -> bool:
        with self._lock:
            if self._transport is None:
                return False
            try:
                return self._transport.card_present()
            except PcscError:
                return False

    def reader_present(self, readers) -> bool:
        """Whether the station's reader is among `readers` (names, e.g. the card monitor's
        snapshot): the one it settled on, or else any that it would take."""
        names = list(readers)
        if self._reader_name is not None:
            return self._reader_name in names
        return any(self.reader in name for name in names)

    def _ours(self, reader: str) -> bool:
        if self._reader_name is not None:
            return reader == self._reader_name
        if self.reader and self.reader not in reader:
            return False
        if reader == self._psam_reader or (self.sam_reader and self.sam_reader in reader):
            return False                    # the SAM slot is never the card reader
        self._reader_name = reader
        return True

    def inserted(self, reader: str, atr: bytes):
        """Read the card just inserted; the flow input it amounts to."""
        with self._lock:
            self._disconnect()
            try:
                self._transport = self._open(reader)
            except PcscError as exc:
                return p.CardRefused(f"the card could not be reached ({exc}); insert it again")
            try:
                # The connection's own ATR: the monitor's may be a look at the card before
                return self._identify(self._transport, self._transport.atr or atr)
            except CardRemoved:
                return p.CardRefused("the card was pulled out while it was being read: insert "
                                     "it again and leave it in the reader")
            except PcscError as exc:
                log.warning("card in %s could not be read: %s", reader, exc)
                return p.CardRefused(f"the card could not be read ({exc}); insert it again, "
                                     "or send it to the cooperative office if this repeats")

    def withdrawn(self) -> None:
        with self._lock:
            farmer = self._farmer
            self._disconnect()
        if farmer is not None:
            self.submit(p.CardRemoved())

    def _disconnect(self) -> None:
        if self._transport is not None:
            try:
                self._transport.close()
            except PcscError:
                pass
        self._transport = None
        self._farmer = None

    # -- what the card is ------------------------------------------------------------------

    def _identify(self, transport, atr: bytes):
        if is_m1(atr):
            if not self.allow_m1:
                return p.CardRefused(message("m1_not_allowed"))
            if self.m1_master_key is None:
                return p.CardRefused("this station is not set up for MIFARE cards (no M1 "
                                     "master key configured); use the farmer's CPU card")
            from drivers.pcsc.m1_card import read_m1_card

            return self._farmer_input(transport, "m1", lambda: read_m1_card(
                transport, self.issuer_verifier, self.m1_master_key))
        try:
            return self._farmer_input(transport, "cpu", lambda: fc.read_farmer_card(
                transport, self.issuer_verifier))
        except fc.NotAFarmerCard:
            pass
        try:
            staff = sc.read_staff_card(transport, self.issuer_verifier)
        except sc.NotAStaffCard:
            return p.CardRefused("unknown card: it is neither a farmer card nor a staff card "
                                 "of the cooperative")
        except fc.CardFormatError as exc:
            return p.CardRefused(str(exc))
        if not staff.signature_valid:
            self._report(staff.uid, "staff", staff.refusal, staff_id=staff.staff_id)
            return p.CardRefused(staff.refusal)
        blocked = self.blacklist.reason(staff.uid)
        if blocked:
            self._report(staff.uid, "staff", f"blacklisted: {blocked}", staff_id=staff.staff_id)
            return p.CardRefused(f"this staff card is blocked ({blocked})")
        # Staff cards carry no key record of their own: "ed25519" leaves them unchallenged
        refusal, card_fault = ("", False) if self.auth == "ed25519" else self._challenge(
            transport, staff.uid, None, "staff card")
        if refusal:
            if card_fault:
                self._report(staff.uid, "staff", refusal, staff_id=staff.staff_id)
            return p.CardRefused(refusal)
        return p.StaffCard(p.Staff(staff.staff_id, staff.name, staff.role))

    def _farmer_input(self, transport, kind: str, read: Callable[[], fc.FarmerCardData]):
        try:
            data = read()
        except fc.NotAFarmerCard:
            raise
        except fc.CardFormatError as exc:
            return p.CardRefused(str(exc))
        if not data.signature_valid:
            self._report(data.uid, kind, data.refusal, farmer_id=data.holder.farmer_id)
            return p.CardRefused(data.refusal)
        blocked = self.blacklist.reason(data.uid)
        if blocked:
            self._report(data.uid, kind, f"blacklisted: {blocked}",
                         farmer_id=data.holder.farmer_id)
            return p.CardRefused(f"this card is blocked by the bank ({blocked}): keep it and "
                                 "send the farmer to the cooperative office")
        if kind == "cpu":
            refusal, card_fault = self._challenge(transport, data.uid, data.auth_key,
                                                  "farmer card")
            if refusal:
                if card_fault:
                    self._report(data.uid, kind, refusal, farmer_id=data.holder.farmer_id)
                return p.CardRefused(refusal)
        fresh = self.blacklist.freshness(*self.blacklist_ages)
        if fresh.state == "never" and not self._said_no_list:
            log.warning(message("blacklist_never"))     # once: it is not news at every card
            self._said_no_list = True
        if fresh.state == "refuse":
            log.error("card blacklist %.0f h old: no sale until a fresh list", fresh.age_h)
            return p.CardRefused(message("blacklist_too_old", age_h=f"{fresh.age_h:.0f}",
                                         limit_h=f"{fresh.refuse_age_h:g}"))
        if self._catch_up(transport, kind, data):
            data = read()
        farmer = p.Farmer(**asdict(replace(fc.accepted_card(data), card_kind=kind)))
        self._farmer = farmer
        return p.FarmerCard(farmer)

    def _challenge(self, transport, uid: str, auth_key: bytes | None,
                   what: str) -> tuple[str, bool]:
        """("", _) when the CPU card in `transport` passes the station's challenge, else why
        not (words for the clerk) and whether the card is at fault (a PSAM fault is the
        station's: nothing to report about the card)."""
        if self.auth == "none":
            return "", False
        if self.auth == "ed25519":
            # A card with its own key must prove it holds it (a copy cannot); a card without
            # one is refused only where the station requires card keys.
            if auth_key is None:
                if self.require_card_key:
                    return (f"this {what} cannot answer the authentication challenge this "
                            "station requires: its holder gets a new card at the cooperative "
                            "office"), True
                return "", False
            return challenge_card(transport, bytes.fromhex(uid), auth_key), True
        try:
            outcome = psam_authenticate(transport, self._psam_session(), bytes.fromhex(uid))
        except PsamError as exc:
            log.error("station PSAM: %s", exc)
            self._close_psam()              # opened afresh at the next card
            return message("psam_unavailable", reason=str(exc)), False
        if outcome.ok:
            return "", False
        log.warning("%s %s: PSAM challenge %s: %s", what, uid, outcome.result, outcome.detail)
        key = {"unable": "card_cannot_authenticate", "failed": "card_failed_authentication",
               "station_refused": "card_refused_station"}[outcome.result]
        return message(key, card=what, detail=outcome.detail), True

    # -- the PSAM ---------------------------------------------------------------------------

    def _psam_session(self) -> Psam:
        """The selected PSAM (caller holds the lock): the one in use while it answers, else
        the one in `sam_reader`, else the first found in a reader other than the card's."""
        if self._psam is not None:
            try:
                if self._psam.transport.card_present():
                    return self._psam
            except PcscError:
                pass
            self._close_psam()
        if self.sam_reader:
            candidates = [self.sam_reader]
        else:
            candidates = [name for name in self._list_readers()
                          if name != self._reader_name
                          and not (self.reader and self.reader in name)]
        problems = []
        for name in candidates:
            try:
                transport = self._open(name)
            except PcscError as exc:
                problems.append(str(exc))
                continue
            try:
                self._psam = Psam.select(transport)
            except PcscError as exc:
                transport.close()
                problems.append(str(exc))
                continue
            self._psam_reader = transport.reader
            log.info("station PSAM in %r (%s keys)", transport.reader, self._psam.algorithm)
            return self._psam
        where = (f"reader {self.sam_reader!r}" if self.sam_reader
                 else "any reader but the card reader")
        raise PsamError(f"no PSAM of the cooperative in {where}"
                        + (f" ({'; '.join(problems)})" if problems else "")
                        + ": put it in the SAM slot, or name its reader in [card] sam_reader")

    def _close_psam(self) -> None:
        if self._psam is not None:
            try:
                self._psam.close()
            except PcscError:
                pass
        self._psam = None

    def close(self) -> None:
        with self._lock:
            self._disconnect()
            self._close_psam()

    # -- what the screen adds --------------------------------------------------------------

    def notices(self) -> list[str]:
        """Lines the screen shows beside the flow's message: the weaker card kind while an
        M1 card is in, and the blacklist's age once past the warning limit. (A station that
        never received a list says so in its log at each farmer card, not on every screen.)"""
        out = []
        farmer = self._farmer
        if farmer is not None and farmer.card_kind == "m1":
            out.append(message("m1_weaker"))
        fresh = self.blacklist.freshness(*self.blacklist_ages)
        if fresh.state in ("warn", "refuse"):
            out.append(message("blacklist_stale", age_h=f"{fresh.age_h:.0f}",
                               max_h=f"{fresh.max_age_h:g}"))
        return out

    def _report(self, uid: str, kind: str, reason: str, **ids) -> None:
        try:
            self.outbox.append(Draft("card.refused", "alert", {
                "card_uid": uid, "card_kind": kind, "reason": reason[:300], **ids}))
        except EXPECTED as exc:
            log.error("could not record a refused card: %s", exc)

    # -- writing sales ---------------------------------------------------------------------

    def write_card(self, farmer: p.Farmer, sale: dict) -> None:
        """Append a recorded sale to the farmer's card (station thread). CardWriteError when
        the card is gone or refuses; the station then owes the sale to the card."""
        with self._lock:
            if self._transport is None or self._farmer is None or \
                    self._farmer.card_uid != farmer.card_uid:
                raise CardWriteError("the farmer's card is no longer in the reader")
            try:
                self._append(self._transport, farmer.card_kind,
                             _card_sale(self.outbox, sale, self.tz), farmer.card_counter)
            except (PcscError, ValueError) as exc:
                raise CardWriteError(str(exc)) from None
            self._farmer = replace(self._farmer, card_counter=self._farmer.card_counter + 1)

    def _append(self, transport, kind: str, card_sale: dict, expected: int | None) -> int:
        if kind == "m1":
            from drivers.pcsc.m1_card import append_m1_sale

            return append_m1_sale(transport, card_sale, master_key=self.m1_master_key,
                                  expected_counter=expected)
        return fc.append_sale(transport, card_sale, expected_counter=expected)

    def _catch_up(self, transport, kind: str, data: fc.FarmerCardData) -> bool:
        """Write the sales still owed to this card; True when any was written."""
        owed = sales.owed_to_card(self.outbox, data.uid)
        on_card = {s.voucher: s.counter for s in data.sales}
        wrote = False
        for seq, sale in owed:
            body = {"card_uid": data.uid, "card_kind": kind, "voucher": sale["voucher"],
                    "seq": seq, "sale_counter": sale["counter"]}
            if sale["voucher"] in on_card:
                # The write the station gave up on (it timed out, or its answer was lost)
                # reached the card after all: writing it again would list the sale twice.
                body.update(written_counter=on_card[sale["voucher"]], already_on_card=True)
                log.info("card %s already holds voucher %s", data.uid, sale["voucher"])
            else:
                body["written_counter"] = self._append(
                    transport, kind, _card_sale(self.outbox, sale, self.tz), None)
                wrote = True
                log.info("card %s brought up to date with voucher %s", data.uid,
                         sale["voucher"])
            sales.card_settled(self.outbox, seq)
            self.outbox.append(Draft("card.caught_up", "money", body))
        return wrote


def _card_sale(outbox, sale: dict, tz: tzinfo) -> dict:
    """The record the card keeps of a sale (the flow's card sale plus the sale's local date,
    the day of its voucher)."""
    created = sales.find(outbox, seq=sale["seq"]).created
    return {"date": datetime.fromtimestamp(created, tz).date().isoformat(),
            "voucher": sale["voucher"], "grade": sale["grade"], "net_g": sale["net_g"],
            "unit_price": sale["unit_price"], "amount": sale["amount"]}


def is_m1(atr: bytes) -> bool:
    try:
        from drivers.pcsc.m1_card import is_m1_atr
    except ImportError:      # the M1 application is not installed: every card is a CPU card
        return False
    return is_m1_atr(atr)

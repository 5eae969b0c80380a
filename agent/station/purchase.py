"""The purchase at a station's bench, as a pure state machine.

    idle -> clerk signed in -> farmer card accepted -> stable weight -> graded -> confirmed
         -> purchase.recorded durable -> sale written to the card -> voucher shown

`PurchaseFlow.handle(input, now)` returns the effects the station must carry out (show a
message, beep, record an event, write the card, print the voucher); the station feeds the
outcome of each effect back as another input. No thread, port or clock lives here, so every
path (timeouts, cards pulled out, a silent scale, a full disk) is tested directly.

Rules it enforces:
- every step has a timeout and can be cancelled; pulling the farmer's card out before the
  confirmation cancels the sale;
- only a stable weight that passes the scale's sale checks can be confirmed, and a weight that
  changes after grading sends the sale back to weighing;
- the same card with the same net weight confirmed again within `duplicate_window_s` needs an
  explicit second confirmation;
- the sale exists once `purchase.recorded` is durable; if that fails (a full disk), the sale is
  refused with the reason and nothing is half-recorded; if writing the card fails afterwards, the
  sale stands and a `card.write_failed` event records it for the next swipe;
- a sale is never deleted: voiding one needs a supervisor's card and records `purchase.voided`
  referencing the original; correcting one needs a supervisor's card too and records a new
  sale whose `purchase.recorded` carries `corrects` (the original's seq and voucher), which
  voids the original in the same transaction. A sale already voided or paid can be neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum

from agent.station.messages import message
from agent.station.timeouts import Timeouts


class Phase(Enum):
    IDLE = "idle"  # nobody signed in
    READY = "ready"  # clerk signed in, waiting for a farmer card
    WEIGHING = "weighing"  # farmer card accepted, waiting for a stable weight
    GRADING = "grading"  # weight taken, waiting for the grade
    CONFIRMING = "confirming"  # priced, waiting for the farmer's confirmation
    CONFIRM_AGAIN = "confirm-again"  # looks like a duplicate: needs a second confirmation
    RECORDING = "recording"  # purchase.recorded is being made durable
    WRITING_CARD = "writing-card"  # the sale is being appended to the card (at most
    #                                Timeouts.card_write_s, then CardWriteFailed)


# -- what the flow is told --------------------------------------------------------------


@dataclass(frozen=True)
class Staff:
    staff_id: str
    name: str
    role: str  # "clerk" or "supervisor"


@dataclass(frozen=True)
class Farmer:
    """A farmer card that the card layer has read and accepted (signature, blacklist)."""

    card_uid: str
    card_kind: str  # "cpu" or "m1"
    farmer_id: str
    name: str
    account_ref: str
    card_counter: int  # the transaction counter this sale will carry


@dataclass(frozen=True)
class Weighing:
    """The scale's current state, as the scale layer judged it for a sale."""

    scale_id: str
    gross_g: int | None
    tare_g: int | None
    net_g: int | None
    stable: bool
    sale_ok: bool  # stable and within the sale checks (min load, overload, negative...)
    reason: str = ""  # why not, for the clerk
    frames_digest: str = ""
    tare_source: str = ""  # drivers.scale.TareSource's value: none, configured, indicator
    # The weighing parameters in force (protocol, division_g, min_g, max_g): recorded with
    # each purchase so that a verifier sees which instrument settings weighed it.
    instrument: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Priced:
    """The grading and pricing result: the record carries every input and output."""

    grade_label: str
    unit_price: Decimal  # yuan per kg
    amount: Decimal  # yuan, rounded to the fen
    record: dict
    chosen_by: str = ""  # how the table in force was chosen: "trusted" or "last_trusted"


@dataclass(frozen=True)
class StaffCard:
    staff: Staff


@dataclass(frozen=True)
class SignOut:
    pass


@dataclass(frozen=True)
class FarmerCard:
    farmer: Farmer


@dataclass(frozen=True)
class CardRefused:
    reason: str  # plain words for the clerk: forged, blacklisted, unknown card...


@dataclass(frozen=True)
class CardRemoved:
    pass


@dataclass(frozen=True)
class ScaleUpdate:
    weighing: Weighing | None  # None: the scale is silent or disconnected


@dataclass(frozen=True)
class Graded:
    priced: Priced


@dataclass(frozen=True)
class GradeRefused:
    reason: str


@dataclass(frozen=True)
class Confirm:
    pass


@dataclass(frozen=True)
class Cancel:
    pass


@dataclass(frozen=True)
class Recorded:
    seq: int
    voucher: str


@dataclass(frozen=True)
class RecordFailed:
    reason: str


@dataclass(frozen=True)
class RecordUncertain:
    """The outbox cannot tell whether the sale was stored, and looking did not find it."""

    reason: str


@dataclass(frozen=True)
class CardWritten:
    pass


@dataclass(frozen=True)
class CardWriteFailed:
    reason: str


@dataclass(frozen=True)
class Void:
    """Void an earlier sale; needs a supervisor signed in."""

    seq: int
    voucher: str
    reason: str


@dataclass(frozen=True)
class Voided:
    """The station recorded `purchase.voided` (at `seq`) and marked the sale voided."""

    voucher: str
    seq: int


@dataclass(frozen=True)
class VoidFailed:
    """Nothing was recorded and the sale stands: `reason` says why (voided, paid, disk full)."""

    voucher: str
    reason: str


@dataclass(frozen=True)
class Correct:
    """Replace an earlier sale by a new one; needs a supervisor signed in.

    The next sale (farmer card, weight, grade, confirmation as usual) is recorded with
    `corrects` naming the original, and the original is voided in the same transaction.
    """

    seq: int
    voucher: str
    reason: str


@dataclass(frozen=True)
class Tick:
    pass


@dataclass(frozen=True)
class LegalAcknowledged:
    """The supervisor's acknowledgement of changed legally relevant software is recorded."""

    supervisor: str


@dataclass(frozen=True)
class LegalAckFailed:
    reason: str


# -- what the flow asks for -------------------------------------------------------------


@dataclass(frozen=True)
class Show:
    text: str
    key: str | None = None      # its key in agent.station.messages, for the screens


@dataclass(frozen=True)
class Beep:
    kind: str  # "accept" or "refuse"


@dataclass(frozen=True)
class RecordPurchase:
    """Append `purchase.recorded` (money); the station draws the voucher in the transaction."""

    body: dict


@dataclass(frozen=True)
class RecordVoid:
    """Append `purchase.voided` (money) and mark the original voided in the same transaction,
    refusing a sale already voided or paid; the outcome is Voided or VoidFailed."""

    body: dict


@dataclass(frozen=True)
class RecordEvent:
    type: str
    priority: str
    body: dict


@dataclass(frozen=True)
class AcknowledgeLegal:
    """Record `legal.acknowledged` by this supervisor; the outcome is LegalAcknowledged or
    LegalAckFailed."""

    supervisor: str


@dataclass(frozen=True)
class WriteCard:
    farmer: Farmer
    sale: dict


@dataclass(frozen=True)
class PrintVoucher:
    voucher: dict


# -- the machine --------------------------------------------------------------------------


@dataclass
class _Sale:
    farmer: Farmer
    weighing: Weighing | None = None
    priced: Priced | None = None
    seq: int | None = None
    voucher: str | None = None
    replaces: str | None = None  # the voucher this sale corrects


@dataclass(frozen=True)
class _Correction:
    seq: int
    voucher: str
    reason: str
    supervisor: str

    def body(self) -> dict:
        return {"seq": self.seq, "voucher": self.voucher, "supervisor": self.supervisor,
                "reason": self.reason}


@dataclass
class PurchaseFlow:
    station: str
    timeouts: Timeouts = field(default_factory=Timeouts)
    phase: Phase = Phase.IDLE
    clerk: Staff | None = None
    sale: _Sale | None = None
    correcting: _Correction | None = None  # the next sale replaces this one
    scale: Weighing | None = None
    deadline: float | None = None
    recent: list[tuple[str, int, float]] = field(default_factory=list)  # uid, net_g, time
    # The legal software identification every purchase records, and whether sales wait for
    # a supervisor to acknowledge that it changed (agent.station.legal).
    legal: str = ""
    legal_hold: bool = False

    def handle(self, event, now: float) -> list:
        """Advance on one input; return the effects to carry out, in order."""
        if isinstance(event, ScaleUpdate):
            self.scale = event.weighing
            return self._on_scale(now)
        if isinstance(event, Tick):
            return self._on_tick(now)
        if isinstance(event, StaffCard):
            return self._on_staff(event.staff, now)
        if isinstance(event, SignOut):
            return self._sign_out("signed out")
        if isinstance(event, Void):
            return self._on_void(event)
        if isinstance(event, Correct):
            return self._on_correct(event, now)
        if isinstance(event, Voided):
            return [Show(f"Voucher {event.voucher} voided (seq {event.seq})"), Beep("accept")]
        if isinstance(event, VoidFailed):
            return [Show(f"Voucher {event.voucher} NOT voided: {event.reason}"), Beep("refuse")]
        if isinstance(event, LegalAcknowledged):
            self.legal_hold = False
            return [Show(f"Supervisor {event.supervisor} acknowledged the new legally relevant "
                         "software. Swipe the farmer's card."), Beep("accept")]
        if isinstance(event, LegalAckFailed):
            return [Show(f"The acknowledgement was NOT recorded: {event.reason}"),
                    Beep("refuse")]
        handler = {
            FarmerCard: self._on_farmer,
            CardRefused: self._on_refused,
            CardRemoved: self._on_card_removed,
            Graded: self._on_graded,
            GradeRefused: self._on_grade_refused,
            Confirm: self._on_confirm,
            Cancel: self._on_cancel,
            Recorded: self._on_recorded,
            RecordFailed: self._on_record_failed,
            RecordUncertain: self._on_record_uncertain,
            CardWritten: self._on_card_written,
            CardWriteFailed: self._on_card_write_failed,
        }.get(type(event))
        if handler is None:
            raise TypeError(f"not a purchase-flow input: {event!r}")
        return handler(event, now)

    # -- sign in / out ----------------------------------------------------------------

    def _on_staff(self, staff: Staff, now: float) -> list:
        if self.phase in (Phase.RECORDING, Phase.WRITING_CARD):
            return [Show("Please wait: the sale is being recorded"), Beep("refuse")]
        if self.sale is not None:
            return [Show("Finish or cancel the current sale first"), Beep("refuse")]
        effects = self._drop_correction("another staff card was swiped")
        self.clerk = staff
        self._enter(Phase.READY, now + self.timeouts.signed_in_s)
        if self.legal_hold and staff.role == "supervisor":
            return effects + [AcknowledgeLegal(staff.staff_id)]
        return effects + [Show(f"{staff.name} signed in. Swipe the farmer's card."),
                          Beep("accept")]

    def _sign_out(self, why: str) -> list:
        effects = self._abandon(why) if self.sale else []
        effects += self._drop_correction(f"clerk {why}")
        self.clerk = None
        self._enter(Phase.IDLE, None)
        return effects + [Show(f"Clerk {why}. Swipe a staff card to start.")]

    # -- the farmer's card ------------------------------------------------------------

    def _on_farmer(self, event: FarmerCard, now: float) -> list:
        if self.phase is Phase.IDLE:
            return [Show("A clerk must sign in first (staff card)"), Beep("refuse")]
        if self.phase is not Phase.READY:
            return [Show("Finish or cancel the current sale first"), Beep("refuse")]
        if self.legal_hold:
            return [Show(message("legal_hold"), key="legal_hold"), Beep("refuse")]
        self.sale = _Sale(event.farmer)
        self._enter(Phase.WEIGHING, now + self.timeouts.weighing_s)
        return [Show(f"Farmer {event.farmer.name} ({event.farmer.farmer_id}). Put the cocoons "
                     "on the scale."), Beep("accept")] + self._on_scale(now)

    def _on_refused(self, event: CardRefused, now: float) -> list:
        return [Show(f"Card refused: {event.reason}"), Beep("refuse")]

    def _on_card_removed(self, event, now: float) -> list:
        if self.phase in (Phase.WEIGHING, Phase.GRADING, Phase.CONFIRMING, Phase.CONFIRM_AGAIN):
            effects = self._abandon("farmer card removed before confirmation")
            self._enter(Phase.READY, now + self.timeouts.signed_in_s)
            return effects
        if self.phase is Phase.WRITING_CARD:
            # The sale is recorded; the card write will fail and be caught up at next swipe.
            return [Show("Card removed while writing: the sale stands and the card will be "
                         "updated at its next swipe")]
        return []

    # -- weight and grade -------------------------------------------------------------

    def _on_scale(self, now: float) -> list:
        if self.sale is None or self.phase not in (Phase.WEIGHING, Phase.GRADING,
                                                   Phase.CONFIRMING, Phase.CONFIRM_AGAIN):
            return []
        w = self.scale
        if self.phase is Phase.WEIGHING:
            if w is not None and w.sale_ok and w.net_g is not None:
                self.sale.weighing = w
                self._enter(Phase.GRADING, now + self.timeouts.grading_s)
                return [Show(f"Net {_kg(w.net_g)} kg (gross {_kg(w.gross_g)}, tare "
                             f"{_kg(w.tare_g)}). Enter the grade from the sample.")]
            return []
        taken = self.sale.weighing
        if w is None or not w.sale_ok or w.net_g != taken.net_g:
            # The load changed after it was taken: weigh again before anything is confirmed.
            self.sale.weighing = None
            self.sale.priced = None
            self._enter(Phase.WEIGHING, now + self.timeouts.weighing_s)
            why = "the scale is silent" if w is None else (w.reason or "the weight changed")
            return [Show(f"Weight no longer valid ({why}): weigh again"), Beep("refuse")]
        return []

    def _on_graded(self, event: Graded, now: float) -> list:
        if self.phase not in (Phase.GRADING, Phase.CONFIRMING):
            return [Show("Weigh the cocoons before grading"), Beep("refuse")]
        self.sale.priced = event.priced
        self._enter(Phase.CONFIRMING, now + self.timeouts.confirming_s)
        p = event.priced
        return [Show(f"{amount_sum(self.sale.weighing, p.record)}. Grade {p.grade_label}. "
                     "Farmer confirms?")]

    def _on_grade_refused(self, event: GradeRefused, now: float) -> list:
        return [Show(f"Grading refused: {event.reason}"), Beep("refuse")]

    # -- confirmation and recording ---------------------------------------------------

    def _on_confirm(self, event, now: float) -> list:
        if self.phase not in (Phase.CONFIRMING, Phase.CONFIRM_AGAIN):
            return [Show("Nothing to confirm yet"), Beep("refuse")]
        sale = self.sale
        w = self.scale
        if w is None or not w.sale_ok or w.net_g != sale.weighing.net_g:
            return self._on_scale(now)
        self.recent = [r for r in self.recent if now - r[2] <= self.timeouts.duplicate_window_s]
        duplicate = any(uid == sale.farmer.card_uid and net == sale.weighing.net_g
                        for uid, net, _ in self.recent)
        if duplicate and self.phase is Phase.CONFIRMING and self.correcting is None:
            self._enter(Phase.CONFIRM_AGAIN, now + self.timeouts.confirming_s)
            return [Show("This card sold the same weight a few minutes ago. Confirm again only "
                         "if this is a new delivery."), Beep("refuse")]
        self._enter(Phase.RECORDING, None)
        return [RecordPurchase(self._purchase_body())]

    def _purchase_body(self) -> dict:
        sale, w, p = self.sale, self.sale.weighing, self.sale.priced
        return {
            "station": self.station,
            "clerk": self.clerk.staff_id,
            "farmer": {
                "farmer_id": sale.farmer.farmer_id,
                "card_uid": sale.farmer.card_uid,
                "card_kind": sale.farmer.card_kind,
                "card_counter": sale.farmer.card_counter,
                "account_ref": sale.farmer.account_ref,
            },
            "scale": {
                "id": w.scale_id,
                "gross_g": str(w.gross_g),
                "tare_g": str(w.tare_g),
                "net_g": str(w.net_g),
                "frames_digest": w.frames_digest,
                **({"tare_source": w.tare_source} if w.tare_source else {}),
                **{k: str(v) for k, v in w.instrument.items()},
            },
            "grade": p.grade_label,
            "unit_price": str(p.unit_price),
            "amount": str(p.amount),
            "currency": "CNY",
            "pricing": p.record,
            **({"legal": self.legal} if self.legal else {}),
            **({"table_chosen_by": p.chosen_by} if p.chosen_by else {}),
            **({"corrects": self.correcting.body()} if self.correcting else {}),
        }

    def _on_recorded(self, event: Recorded, now: float) -> list:
        if self.phase is not Phase.RECORDING:
            raise RuntimeError("Recorded outside RECORDING")
        sale = self.sale
        sale.seq, sale.voucher = event.seq, event.voucher
        sale.replaces = self.correcting.voucher if self.correcting else None
        self.correcting = None  # the original was voided in the sale's own transaction
        self.recent.append((sale.farmer.card_uid, sale.weighing.net_g, now))
        self._enter(Phase.WRITING_CARD, None)
        return [WriteCard(sale.farmer, self._card_sale()), PrintVoucher(self._voucher())]

    def _card_sale(self) -> dict:
        s = self.sale
        return {"voucher": s.voucher, "seq": s.seq, "grade": s.priced.grade_label,
                "net_g": s.weighing.net_g, "unit_price": str(s.priced.unit_price),
                "amount": str(s.priced.amount), "counter": s.farmer.card_counter}

    def _voucher(self) -> dict:
        s = self.sale
        record = s.priced.record
        return {"voucher": s.voucher, "device": self.station, "seq": s.seq,
                "farmer": s.farmer.name, "farmer_id": s.farmer.farmer_id,
                "gross_g": s.weighing.gross_g, "tare_g": s.weighing.tare_g,
                "net_g": s.weighing.net_g, "grade": s.priced.grade_label,
                "unit_price": str(s.priced.unit_price), "amount": str(s.priced.amount),
                **breakdown(record)}

    def _on_record_failed(self, event: RecordFailed, now: float) -> list:
        if self.phase is not Phase.RECORDING:
            raise RuntimeError("RecordFailed outside RECORDING")
        # Nothing was recorded: go back to confirming so the clerk can retry or cancel.
        self._enter(Phase.CONFIRMING, now + self.timeouts.confirming_s)
        return [Show(f"SALE NOT RECORDED: {event.reason}"), Beep("refuse")]

    def _on_record_uncertain(self, event: RecordUncertain, now: float) -> list:
        if self.phase is not Phase.RECORDING:
            raise RuntimeError("RecordUncertain outside RECORDING")
        # Not back to confirming: a second Confirm could record the sale twice. The clerk
        # looks at today's sales first.
        self.correcting = None
        self._enter(Phase.READY, now + self.timeouts.signed_in_s)
        return [Show(message("sale_may_be_recorded", reason=event.reason[:200]),
                     key="sale_may_be_recorded"), Beep("refuse")]

    def _on_card_written(self, event, now: float) -> list:
        return self._finish(now, f"Sale recorded: voucher {self.sale.voucher}"
                                 + self._replaces())

    def _replaces(self) -> str:
        old = self.sale.replaces
        return f" (replaces voucher {old}, now voided)" if old else ""

    def _on_card_write_failed(self, event: CardWriteFailed, now: float) -> list:
        s = self.sale
        note = RecordEvent("card.write_failed", "alert", {
            "voucher": s.voucher, "seq": s.seq, "card_uid": s.farmer.card_uid,
            "farmer_id": s.farmer.farmer_id, "reason": event.reason[:300]})
        return [note] + self._finish(
            now, f"Sale recorded: voucher {s.voucher}{self._replaces()}. The card could not "
                 "be written "
                 f"({event.reason}); it will be updated at its next swipe.")

    def _finish(self, now: float, text: str) -> list:
        if self.phase is not Phase.WRITING_CARD:
            raise RuntimeError("card result outside WRITING_CARD")
        self.sale = None
        self._enter(Phase.READY, now + self.timeouts.signed_in_s)
        return [Show(text), Beep("accept")]

    # -- cancel, void, timeouts -----------------------------------------------------------

    def _on_cancel(self, event, now: float) -> list:
        if self.phase in (Phase.RECORDING, Phase.WRITING_CARD):
            return [Show("The sale is already being recorded; void it with a supervisor card"),
                    Beep("refuse")]
        if self.sale is None:
            return self._drop_correction("cancelled by the clerk")
        effects = self._abandon("cancelled by the clerk")
        self._enter(Phase.READY, now + self.timeouts.signed_in_s)
        return effects

    def _abandon(self, why: str) -> list:
        sale = self.sale
        self.sale = None
        body = {"reason": why, "farmer_id": sale.farmer.farmer_id,
                "card_uid": sale.farmer.card_uid}
        if sale.weighing is not None:
            body["net_g"] = str(sale.weighing.net_g)
        return ([RecordEvent("purchase.cancelled", "telemetry", body),
                 Show(f"Sale cancelled: {why}"), Beep("refuse")]
                + self._drop_correction(why))

    def _drop_correction(self, why: str) -> list:
        if self.correcting is None:
            return []
        voucher, self.correcting = self.correcting.voucher, None
        return [Show(f"Correction of voucher {voucher} abandoned ({why}); the original "
                     "sale stands")]

    def _supervisor_free(self, what: str) -> list:
        """Refusals for a void or a correction; [] when one may start."""
        if self.clerk is None or self.clerk.role != "supervisor":
            return [Show(f"{what} a sale needs a supervisor's staff card"), Beep("refuse")]
        if self.sale is not None or self.phase is not Phase.READY:
            return [Show("Finish or cancel the current sale first"), Beep("refuse")]
        if self.correcting is not None:
            return [Show(f"Finish or cancel the correction of voucher "
                         f"{self.correcting.voucher} first"), Beep("refuse")]
        return []

    def _on_void(self, event: Void) -> list:
        refused = self._supervisor_free("Voiding")
        if refused:
            return refused
        return [RecordVoid({
            "original_seq": event.seq, "original_voucher": event.voucher,
            "supervisor": self.clerk.staff_id, "reason": event.reason})]

    def _on_correct(self, event: Correct, now: float) -> list:
        refused = self._supervisor_free("Correcting")
        if refused:
            return refused
        self.correcting = _Correction(event.seq, event.voucher, event.reason,
                                      self.clerk.staff_id)
        self._enter(Phase.READY, now + self.timeouts.signed_in_s)
        return [Show(f"Correcting voucher {event.voucher}: swipe the farmer's card, weigh and "
                     f"grade again. The new sale replaces {event.voucher}."), Beep("accept")]

    def _on_tick(self, now: float) -> list:
        if self.deadline is None or now < self.deadline:
            return []
        if self.phase is Phase.READY:
            return self._sign_out("signed out after inactivity")
        if self.phase in (Phase.WEIGHING, Phase.GRADING, Phase.CONFIRMING, Phase.CONFIRM_AGAIN):
            effects = self._abandon(f"timed out while {self.phase.value}")
            self._enter(Phase.READY, now + self.timeouts.signed_in_s)
            return effects
        return []

    def _enter(self, phase: Phase, deadline: float | None) -> None:
        self.phase, self.deadline = phase, deadline


def breakdown(record: dict) -> dict:
    """What the farmer needs to check the sum, from the pricing record: each deduction that
    took something (with what was measured), the payable weight, the graded price."""
    if not isinstance(record, dict) or "payable_g" not in record:
        return {}
    return {
        "deductions": [
            {"measure": d["measure"], "measured_pct": d["measured_pct"],
             "applies_to": d["applies_to"], "pct": d["pct"]}
            for d in record.get("deductions", ()) if Decimal(d["pct"]) != 0],
        "payable_g": record["payable_g"],
        "graded_price": record.get("graded_price", ""),
        "price_unit": record.get("price_unit", ""),
    }


def amount_sum(w: Weighing, record: dict) -> str:
    """One line that multiplies out: net, each deduction, payable weight x price = amount."""
    b = breakdown(record)
    parts = [f"Net {_kg(w.net_g)} kg"]
    for d in b.get("deductions", ()):
        what = "weight" if d["applies_to"] == "mass" else "price"
        parts.append(f"- {d['pct']} % of the {what} ({d['measure']} {d['measured_pct']} %)")
    payable = _payable_kg(b["payable_g"]) if b else _kg(w.net_g)
    return (", ".join(parts) + f": payable {payable} kg x {record.get('unit_price')} yuan/kg "
            f"= {record.get('amount')} yuan")


def _payable_kg(payable_g: str) -> str:
    """Exact: a fraction of a gram stays (51801 g less 3.5 % is 49987.965 g)."""
    kg = Decimal(payable_g).scaleb(-3)
    grams = kg.quantize(Decimal("0.001"))
    return f"{grams:f}" if kg == grams else f"{kg.normalize():f}"


def _kg(grams: int | None) -> str:
    return "-" if grams is None else str((Decimal(grams) / 1000).quantize(Decimal("0.001")))

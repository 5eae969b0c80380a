"""The station at run time: carries out what the purchase flow asks for.

One thread owns the flow. Inputs (cards, scale updates, the clerk's keys, ticks) arrive on a
queue from any thread; each effect the flow returns is carried out here and its outcome fed back
at once, in order: record the purchase durably (drawing the voucher in the same transaction),
write the sale to the card, print the voucher, show messages, sound the buzzer. Nothing here
decides anything about the sale; the flow does.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal

from agent.contract.events import Draft
from agent.contract.pricing.amount import Lot, price
from agent.contract.pricing.record import pricing_record
from agent.errors import EXPECTED, CocoonError, OutboxUncertain
from agent.station import purchase as p
from agent.station import sales
from agent.station.messages import message
from agent.station.price_store import PriceTableRefused
from agent.station.trusted_time import TrustedTime
from drivers.printer import day_report_lines

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _GradeRequest:
    measurements: dict
    when: datetime | None


class EffectRunner:
    def __init__(self, device: str, outbox, *, write_card: Callable[[p.Farmer, dict], None],
                 display: Callable[[str], None] = lambda text: None,
                 buzzer: Callable[[str], None] = lambda kind: None,
                 printer=None, prices=None, timeouts: p.Timeouts | None = None,
                 clock: Callable[[], float] = time.monotonic, tz: tzinfo | None = None,
                 wall_clock: Callable[[], float] = time.time,
                 trusted: TrustedTime | None = None, language: str = "en"):
        self.device = device
        self.tz = tz or sales.local_zone()  # the voucher's day is the station's local day
        self.wall_clock = wall_clock
        self.outbox = outbox
        self.flow = p.PurchaseFlow(device, timeouts or p.Timeouts())
        self.write_card = write_card
        self.display = display
        self.message_key: str | None = None   # of the last message shown, when it has one
        self.buzzer = buzzer
        self.printer = printer
        self.prices = prices  # a PriceTableStore
        self.legal_record = None  # an agent.station.legal.LegalRecord, set by the part
        self.trusted = trusted or TrustedTime(outbox)
        self.language = language    # the farmer's voucher: the station's language
        self._refused_tables = ""
        self.clock = clock
        self.inputs: queue.Queue = queue.Queue()
        self.last_voucher: dict | None = None
        self.printer_fault = ""     # why the last voucher did not print ('' when it did)

    # -- feeding ----------------------------------------------------------------------

    def submit(self, event) -> None:
        """Queue an input for the flow (thread-safe)."""
        self.inputs.put(event)

    def grade(self, measurements: dict, *, when: datetime | None = None) -> None:
        """Price the current sale from the sample's measurements with the table in force.

        `measurements` holds Lot fields other than the weight (`shell_g` or
        `shell_ratio_pct`, `moisture_pct`, `reelable_pct`, `defects_pct`), as decimal strings.
        Submitted as an input, so it is processed in order with cards and weights.
        """
        self.submit(_GradeRequest(dict(measurements), when))

    def run(self, stop: threading.Event, tick_s: float = 0.5) -> None:
        while not stop.is_set():
            try:
                event = self.inputs.get(timeout=tick_s)
            except queue.Empty:
                event = p.Tick()
            self.handle(event)

    def handle(self, event) -> None:
        """Process one input and everything that follows from it, synchronously."""
        if isinstance(event, CloseDay | Reprint):
            self._station_request(event)
            return
        if isinstance(event, _GradeRequest):
            event = self._price(event)
        pending = [event]
        while pending:
            effects = self.flow.handle(pending.pop(0), self.clock())
            for effect in effects:
                outcome = self._carry_out(effect)
                if outcome is not None:
                    pending.append(outcome)

    def _price(self, request: _GradeRequest):
        sale = self.flow.sale
        if self.prices is None:
            return p.GradeRefused("no price table is installed on this station")
        if sale is None or sale.weighing is None:
            return p.GradeRefused("weigh the cocoons before grading")
        try:
            when, chosen_by = ((request.when, "trusted") if request.when is not None
                               else self.trusted.now())
            table = self.prices.in_force(when)
            quote = price(table, Lot(net_g=sale.weighing.net_g, **request.measurements))
        except PriceTableRefused as exc:
            self._price_table_refused(str(exc))
            return p.GradeRefused(message("cannot_price", reason=str(exc)))
        except (*EXPECTED, TypeError) as exc:
            return p.GradeRefused(str(exc))
        return p.Graded(p.Priced(quote.grade.label, quote.unit_price, quote.amount,
                                 pricing_record(quote), chosen_by=chosen_by))

    def _price_table_refused(self, reason: str) -> None:
        """One `price_table.refused` alert per distinct reason (not one per grading)."""
        if reason == self._refused_tables:
            return
        self._refused_tables = reason
        log.error("price tables refused: %s", reason)
        self._record(Draft("price_table.refused", "alert", {"reason": reason}))

    # -- effects ------------------------------------------------------------------------

    def _carry_out(self, effect):
        if isinstance(effect, p.Show):
            self.message_key = effect.key       # what a screen shows in the clerk's language
            self.display(effect.text)
        elif isinstance(effect, p.Beep):
            self.buzzer(effect.kind)
        elif isinstance(effect, p.RecordPurchase):
            return self._record_purchase(effect.body)
        elif isinstance(effect, p.RecordVoid):
            return self._record_void(effect.body)
        elif isinstance(effect, p.RecordEvent):
            self._record(Draft(effect.type, effect.priority, effect.body))
        elif isinstance(effect, p.AcknowledgeLegal):
            return self._acknowledge_legal(effect.supervisor)
        elif isinstance(effect, p.WriteCard):
            return self._write_card(effect.farmer, effect.sale)
        elif isinstance(effect, p.PrintVoucher):
            self._print(effect.voucher)
        else:
            raise TypeError(f"unknown effect {effect!r}")
        return None

    def _record_purchase(self, body: dict):
        now = self.wall_clock()
        try:
            seq = self.outbox.append(Draft("purchase.recorded", "money", body),
                                     within=sales.recorder(self.device, body, now=now,
                                                           tz=self.tz))
        except OutboxUncertain as exc:
            found = sales.recorded_at(self.outbox, body, now)
            if found is not None:
                log.warning("purchase recorded after all (seq %d voucher %s): %s", found.seq,
                            found.voucher, exc)
                return p.Recorded(found.seq, found.voucher)
            log.error("purchase may or may not be recorded: %s", exc)
            return p.RecordUncertain(str(exc))
        except EXPECTED as exc:
            log.error("purchase not recorded: %s", exc)
            return p.RecordFailed(str(exc))
        voucher = sales.find(self.outbox, seq=seq).voucher
        log.info("purchase recorded: seq %d voucher %s amount %s", seq, voucher, body["amount"])
        return p.Recorded(seq, voucher)

    def _record_void(self, body: dict):
        """Append `purchase.voided`; the sale is marked voided by that event's seq inside the
        event's own transaction, so it is marked if and only if the event is durable."""
        original = body["original_voucher"]
        try:
            seq = self.outbox.append(
                Draft("purchase.voided", "money", body),
                within=sales.voider(body["original_seq"], original))
        except EXPECTED as exc:
            log.error("void of %s not recorded: %s", original, exc)
            return p.VoidFailed(original, str(exc))
        log.info("purchase voided: voucher %s by seq %d", original, seq)
        return p.Voided(original, seq)

    def _write_card(self, farmer: p.Farmer, sale: dict):
        """Write the sale to the card, waiting at most `card_write_s`; the outcome for the flow.

        The write runs in a thread of its own so that a card or reader that never answers
        cannot hold the station: past the timeout the sale is owed to the card and the flow
        told the write failed. If the write then succeeds after all, the sale is no longer
        owed (and a catch-up finds it on the card anyway, card_desk); if it fails, it stays
        owed.
        """
        timeout = self.flow.timeouts.card_write_s
        done = threading.Event()
        lock = threading.Lock()
        state = {"error": None, "abandoned": False}

        def write() -> None:
            error = None
            try:
                self.write_card(farmer, sale)
            except Exception as exc:  # a driver's bug is a failed write, not a dead station
                if not isinstance(exc, EXPECTED):
                    log.exception("card write for sale %s crashed", sale.get("voucher"))
                error = exc
            with lock:
                if not state["abandoned"]:
                    state["error"] = error
                    done.set()
                    return
            if error is None:  # written after the station gave up: no longer owed
                log.warning("card answered after %s s: sale %s is on it after all", timeout,
                            sale.get("voucher"))
                try:
                    sales.card_settled(self.outbox, sale["seq"])
                except EXPECTED as exc:
                    log.error("could not settle the sale owed to the card: %s", exc)

        threading.Thread(target=write, name="card-write", daemon=True).start()
        done.wait(timeout)
        with lock:
            if done.is_set():
                error = state["error"]
                if error is None:
                    return p.CardWritten()
                reason = str(error) or type(error).__name__
            else:
                state["abandoned"] = True
                reason = f"the card did not answer within {timeout:g} s"
            log.warning("card write failed for sale %s: %s", sale.get("voucher"), reason)
            try:  # the card gets the sale at its next swipe (before a late success settles it)
                sales.owe_card(self.outbox, sale["seq"], sale)
            except EXPECTED as owe_exc:
                log.error("could not keep the sale owed to the card: %s", owe_exc)
        return p.CardWriteFailed(reason)

    def _acknowledge_legal(self, supervisor: str):
        try:
            seq = self.legal_record.acknowledge(supervisor)
        except EXPECTED as exc:
            log.error("could not record legal.acknowledged: %s", exc)
            return p.LegalAckFailed(str(exc))
        log.warning("legal.acknowledged (seq %d) by supervisor %s", seq, supervisor)
        return p.LegalAcknowledged(supervisor)

    def _record(self, draft: Draft) -> None:
        try:
            self.outbox.append(draft)
        except EXPECTED as exc:
            log.error("could not record %s: %s", draft.type, exc)
            self.display(f"WARNING: could not record {draft.type}: {exc}")

    def _station_request(self, request) -> None:
        """The end of the day and a voucher's copy: a signed-in clerk, between sales."""
        clerk = self.flow.clerk
        if clerk is None:
            self.display("Sign in with your staff card first")
            return
        if self.flow.sale is not None:
            self.display("Finish or cancel the current sale first")
            return
        try:
            if isinstance(request, CloseDay):
                body = self.close_day(clerk.staff_id)
                self.display(f"Day {body['day']} closed: {body['count']} sales, "
                             f"{body['amount']} yuan; {body['acknowledged']} acknowledged by "
                             "the bank. The report is printed.")
            else:
                self.reprint(request.voucher)
                self.display(f"Voucher {request.voucher} printed again (copy)")
        except EXPECTED as exc:
            log.error("%s", exc)
            self.display(str(exc))

    def close_day(self, clerk: str, now: float | None = None) -> dict:
        """Record the end of the station's local day as a signed `day.closed` (money: never
        evicted) with the day's count and sums in all and per grade, so that the bank can
        reconcile, and print the report. A day may be closed again later: each `day.closed`
        carries the whole day as it stood. Returns the event's body."""
        now = self.wall_clock() if now is None else now
        body = {"station": self.device, "clerk": clerk,
                **sales.day_report(self.outbox, self.device, sales.day_of(now, self.tz))}
        seq = self.outbox.append(Draft("day.closed", "money", body))
        log.info("day %s closed (seq %d): %d sales, %s yuan", body["day"], seq, body["count"],
                 body["amount"])
        self._print_lines(day_report_lines(body, self.language), f"day report {body['day']}")
        return body

    def reprint(self, voucher: str) -> None:
        """Print a recorded sale's voucher again, marked as a copy."""
        doc = sales.kept_voucher(self.outbox, voucher)
        self._print({**doc, "copy": True}, keep=False)

    def _print_lines(self, lines: list[str], what: str) -> None:
        if self.printer is None:
            return
        from drivers.printer import PrinterError, print_lines

        try:
            print_lines(self.printer, lines, language=self.language)
        except PrinterError as exc:
            log.error("%s", exc)
            self.printer_fault = str(exc)
            self.display(f"Printer fault: {exc}. The {what} is recorded; print it again.")

    def _print(self, voucher: dict, keep: bool = True) -> None:
        if keep:
            self.last_voucher = voucher
            try:
                sales.keep_voucher(self.outbox, voucher)
            except EXPECTED as exc:      # the sale stands; only a later copy cannot be made
                log.error("voucher %s not kept for copies: %s", voucher["voucher"], exc)
        if self.printer is None:
            return
        from drivers.printer import PrinterError, print_voucher

        try:
            print_voucher(self.printer, voucher, self.language)
            self.printer_fault = ""
        except PrinterError as exc:
            log.error("%s", exc)
            self.printer_fault = str(exc)
            self.display(f"Printer fault: {exc}. The sale is recorded; print it again.")
            self._record(Draft("printer.failed", "alert",
                               {"voucher": voucher["voucher"], "reason": str(exc)[:300]}))


AMOUNT_RE = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,8})?$")


@dataclass(frozen=True)
class CloseDay:
    """Close the station's day: `day.closed` and the printed report (a clerk signed in)."""


@dataclass(frozen=True)
class Reprint:
    """Print a recorded sale's voucher again, marked as a copy."""

    voucher: str


def payment_handler(outbox, on_paid: Callable[[sales.Sale], None] = lambda sale: None):
    """Handler for the bank's `payment.confirmed` command: marks the sale paid.

    Body: `voucher`, `payment_ref` and `amount` (yuan, a decimal string), all required. The
    payment is refused (the handler raises, and the dispatcher records `command.failed` with
    the reason) when the amount is not exactly the sale's recorded amount, when the sale was
    voided, or when it was already paid under another `payment_ref`. The same payment again
    (same voucher, `payment_ref` and amount) is accepted and changes nothing: the bank may
    resend a confirmation it has no answer for.
    """

    def handle(cmd) -> dict:
        body = cmd.body
        voucher, ref, amount = body.get("voucher"), body.get("payment_ref"), body.get("amount")
        if not isinstance(voucher, str) or not voucher or not isinstance(ref, str) or not ref:
            raise CocoonError("payment.confirmed needs a voucher and a payment_ref")
        if not isinstance(amount, str) or not AMOUNT_RE.match(amount):
            raise CocoonError("payment.confirmed needs the amount paid in yuan as a decimal "
                              f"string (e.g. \"2015.09\"), got {amount!r}")
        sale = sales.find(outbox, voucher=voucher)
        if Decimal(amount).normalize() != Decimal(sale.amount).normalize():
            raise CocoonError(f"payment amount {amount} does not match the sale's "
                              f"amount {sale.amount} for voucher {voucher}")
        if sale.paid_at and not sale.voided_by and sale.payment_ref == ref:
            return {"voucher": voucher, "seq": sale.seq, "payment_ref": ref,
                    "already_paid": True}
        paid = sales.mark_paid(outbox, voucher, ref)
        on_paid(paid)
        return {"voucher": voucher, "seq": paid.seq, "payment_ref": ref}

    return handle

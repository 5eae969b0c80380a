"""What the screen shows, as one JSON-able snapshot of the station part, in the clerk's language.

Everything here is read from the station (the flow's phase, clerk, sale, weight and price, the
last message, the parts' faults, the link, today's sales); numbers are formatted for the
language with Babel, words come from the gettext catalog. Nothing is decided here.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from decimal import Decimal

from agent import __version__
from agent.errors import EXPECTED
from agent.screen.fields import grade_fields, measure_label
from agent.screen.flow_words import flow_words
from agent.screen.i18n import Language
from agent.screen.reason_words import N_
from agent.station.purchase import breakdown
from agent.station.view import sale_lines, start_of_day


def labels(lang: Language) -> dict[str, str]:
    """The page's fixed words, by key (the page's `data-t` attributes name them)."""
    _ = lang._
    return {
        "title": _("Cocoon purchase"),
        "farmer_title": _("Your sale"),
        "reader": _("Card reader"),
        "scale": _("Scale"),
        "printer": _("Printer"),
        "link": _("Link to the bank"),
        "clerk": _("Clerk"),
        "farmer": _("Farmer"),
        "gross": _("Gross"),
        "tare": _("Tare"),
        "net": _("Net"),
        "stable": _("Stable"),
        "unstable": _("Not stable"),
        "grade": _("Grade"),
        "unit_price": _("Price"),
        "amount": _("Amount"),
        "payable": _("Payable weight"),
        "confirm": _("Confirm"),
        "cancel": _("Cancel"),
        "price_it": _("Price it"),
        "sign_out": _("Sign out"),
        "sales": _("Today's sales"),
        "close": _("Close"),
        "total": _("Total"),
        "voucher": _("Voucher"),
        "time": _("Time"),
        "state": _("State"),
        "kg": _("kg"),
        "yuan": _("yuan"),
        "yuan_per_kg": _("yuan/kg"),
        "not_a_number": _("Type a number"),
        "out_of_range": _("Out of range"),
        "range": _("from {low} to {high}"),
        "offline_banner": _("Offline"),
        "no_sale": _("Waiting for the next sale"),
        "deduction": _("Deduction"),
        "measured": _("Measured"),
        "last_sale": _("Last sale"),
        "software": _("Weighing software"),
        "reprint": _("Copy"),
        "close_day": _("Close the day"),
        "void": _("Void"),
        "correct": _("Correct"),
        "void_why": _("Void voucher {voucher}: why?"),
        "correct_why": _("Correct voucher {voucher}: why?"),
        "supervisor_only": _("Void and correct need a supervisor's staff card"),
        # What the supervisor may choose as the reason; the English is what is recorded.
        "reasons": {reason: _(reason) for reason in VOID_REASONS},
    }


# The reasons a supervisor chooses from on the touch screen for a void or a correction (the
# console takes any words): recorded in English in the event, shown in the clerk's language.
VOID_REASONS = (N_("wrong weight"), N_("wrong grade"), N_("wrong farmer card"),
                N_("the farmer withdrew the sale"))


def _instruction(lang: Language, phase: str) -> str:
    _ = lang._
    return {
        "idle": _("Put your staff card on the reader to sign in"),
        "ready": _("Put the farmer's card on the reader"),
        "weighing": _("Put the cocoons on the scale and wait for a stable weight"),
        "grading": _("Enter the sample's measurements"),
        "confirming": _("Show the amount to the farmer. Confirm when the farmer agrees"),
        "confirm-again": _("This card sold the same weight a few minutes ago. Confirm again "
                           "only if this is a new delivery"),
        "recording": _("Recording the sale..."),
        "writing-card": _("Writing the sale to the farmer's card. Leave the card on the "
                          "reader"),
    }.get(phase, phase)


def _parts(part, lang: Language, online: bool, queued: int) -> list[dict]:
    _ = lang._
    reader = part.card_reader_fault()
    scale_fault = part.scale_fault or ("" if part.weighing is not None else "silent")
    printer = part.station.printer
    printer_fault = part.station.printer_fault
    out = [
        {"name": "reader", "ok": not reader, "detail": reader,
         "advice": _("The card reader does not answer: check its cable. If it stays red, "
                     "call the technician") if reader else ""},
        {"name": "scale", "ok": not scale_fault, "detail": part.scale_fault,
         "advice": _("The scale sends no weight: check that the indicator is on and its "
                     "cable is plugged in") if scale_fault else ""},
        {"name": "printer", "ok": printer is not None and not printer_fault,
         "detail": printer_fault if printer is not None else _("no printer"),
         "advice": (_("The voucher did not print: check the paper and the printer's cable. "
                      "The sale is recorded") if printer_fault else
                    _("No printer: read the voucher number to the farmer")
                    if printer is None else "")},
        {"name": "link", "ok": online, "waiting": queued,
         "detail": _("{n} events waiting").format(n=queued),
         "advice": "" if online else _("No link to the bank: sales are kept safely and sent "
                                       "when it is back. You can keep selling")},
    ]
    return out


def _breakdown(lang: Language, net_g: int, priced) -> list[dict]:
    """Rows for the amount as the flow breaks it down (agent.station.purchase.breakdown): the
    net weight, each deduction that took something with what was measured, the payable weight,
    the grade and its price, the unit price; a field the breakdown gains later is shown as it
    comes."""
    _ = lang._
    b = breakdown(priced.record)
    rows = [{"label": _("Net"), "value": f"{lang.kg(net_g)} {_('kg')}"},
            {"label": _("Grade"), "value": priced.grade_label}]
    if b.get("graded_price"):
        rows.append({"label": _("Price of the grade"),
                     "value": f"{lang.number(b['graded_price'])} {_('yuan/kg')}"})
    for d in b.get("deductions", ()):
        target = _("of the weight") if d.get("applies_to") == "mass" else _("of the price")
        rows.append({"label": f"{_('Deduction')}: {measure_label(lang, d.get('measure', ''))}"
                              f" {lang.percent(d.get('measured_pct', '0'))} %",
                     "value": f"-{lang.percent(d['pct'])} % {target}"})
    if b.get("payable_g"):
        rows.append({"label": _("Payable weight"),
                     "value": f"{lang.kg(Decimal(b['payable_g']))} {_('kg')}"})
    rows.append({"label": _("Price"),
                 "value": f"{lang.number(priced.unit_price, 2)} {_('yuan/kg')}"})
    for key, value in b.items():        # what the breakdown gains later, shown as it comes
        if key not in ("deductions", "payable_g", "graded_price", "price_unit") and \
                isinstance(value, str | int) and value != "":
            rows.append({"label": key, "value": str(value)})
    return rows


def _fields(part, lang: Language) -> tuple[list[dict], str]:
    try:
        table = part.prices.in_force(datetime.now(timezone.utc))
    except EXPECTED as exc:
        return [], str(exc)
    return [{"name": f.name, "label": measure_label(lang, f.name), "unit": f.unit,
             "low": str(f.low), "high": str(f.high)} for f in grade_fields(table)], ""


def snapshot(part, lang: Language, cache: dict | None = None) -> dict:
    """The state; `cache` (kept by the caller between calls) holds the grade fields of the
    current sale, so the price tables are read once per sale, not at every change."""
    _ = lang._
    runner = part.station
    flow = runner.flow
    sale = flow.sale
    w = part.weighing
    stats = part.outbox.stats()
    queued = stats.counts["pending"] + stats.counts["sent"]
    online = part.agent.link.status.connected
    state: dict = {
        "device": part.device,
        "phase": flow.phase.value,
        "instruction": _instruction(lang, flow.phase.value),
        "clerk": None if flow.clerk is None else {"name": flow.clerk.name,
                                                   "id": flow.clerk.staff_id,
                                                   "role": flow.clerk.role},
        "farmer": None if sale is None else {"name": sale.farmer.name,
                                             "id": sale.farmer.farmer_id},
        "weight": None if w is None else {
            "gross": lang.kg(w.gross_g), "tare": lang.kg(w.tare_g), "net": lang.kg(w.net_g),
            "stable": w.stable, "sale_ok": w.sale_ok,
            "reason": flow_words(lang, w.reason) if w.reason else ""},
        "parts": _parts(part, lang, online, queued),
        "online": online,
        "queued": queued,
    }
    message = flow_words(lang, part.message)   # keyed or not, known by its words
    state["message"] = {"text": message, "refused": part.refused}
    taken = sale.weighing if sale is not None else None
    state["taken"] = None if taken is None else {
        "gross": lang.kg(taken.gross_g), "tare": lang.kg(taken.tare_g),
        "net": lang.kg(taken.net_g)}
    priced = sale.priced if sale is not None else None
    state["priced"] = None if priced is None else {
        "grade": priced.grade_label,
        "unit_price": lang.number(priced.unit_price, 2),
        "amount": lang.number(priced.amount, 2),
        "breakdown": _breakdown(lang, taken.net_g, priced)}
    if flow.phase.value == "grading":
        cache = {} if cache is None else cache
        if cache.get("sale") is not sale:
            cache["sale"], cache["fields"] = sale, _fields(part, lang)
        state["fields"], state["no_table"] = cache["fields"]
    voucher = runner.last_voucher
    state["last_voucher"] = None if voucher is None or sale is not None else {
        "voucher": voucher["voucher"], "farmer": voucher["farmer"],
        "net": lang.kg(voucher["net_g"]), "grade": voucher["grade"],
        "amount": lang.number(voucher["amount"], 2)}
    state["sales"] = _sales(part, lang)
    state["at"] = time.time()
    return state


def _sales(part, lang: Language) -> dict:
    _ = lang._
    names = {"queued": _("waiting to be sent"), "sent": _("sent"),
             "acknowledged": _("received by the bank"), "paid": _("paid"),
             "voided": _("voided")}
    lines = sale_lines(part.outbox, start_of_day(tz=part.station.tz))
    kept = [s for s in lines if s.state != "voided"]
    return {
        "lines": [{"voucher": s.voucher, "farmer_id": s.farmer_id, "net": lang.kg(s.net_g),
                   "amount": lang.number(s.amount, 2), "state": s.state,
                   "state_text": names.get(s.state, s.state)} for s in lines],
        "count": len(kept),
        "net": lang.kg(sum(s.net_g for s in kept)),
        "amount": lang.number(sum((Decimal(s.amount) for s in kept), Decimal(0)), 2),
        "acknowledged": sum(1 for s in kept if s.state in ("acknowledged", "paid")),
        # The legally relevant software's identification, as `cocoon-agent --version` says
        # it: shown with today's sales, on the clerk's (or a verifier's) request.
        "software": f"cocoon-agent {__version__}, legal {part.legal.legal_id}",
    }

"""The station's messages in the clerk's language.

The purchase flow and the station speak English (the console and the logs show it as it is).
The screen recognises each of their sentences by its fixed words and says it again from the
gettext catalog, keeping the values (names, vouchers, weights, reasons) as they came. A reason
that comes from the scale check or the pricing is said again the same way
(agent.screen.reason_words); one from elsewhere (the card layer's for a refused card) stays as
it was. A sentence not recognised is shown as it is: a test drives the
flow through its paths and fails on any sentence this table does not know.
"""

from __future__ import annotations

import functools
import re

from agent.screen.i18n import Language
from agent.screen.reason_words import reason_patterns, say_value
from agent.station.card_messages import CATALOGUE as CARD_CATALOGUE
from agent.station.messages import CATALOGUE as FLOW_CATALOGUE

CATALOGUE = {**FLOW_CATALOGUE, **CARD_CATALOGUE}   # every keyed message


def keyed_messages(lang: Language) -> dict[str, str]:
    """The station's messages that have a key (agent.station.messages), in the clerk's
    language; a test checks that their English is the catalogue's."""
    _ = lang._
    return {
        "sale_may_be_recorded": _("The sale MAY HAVE BEEN RECORDED: check today's sales list "
                                  "before selling this lot again ({reason})"),
        "cannot_price": _("The station CANNOT PRICE: {reason}"),
        "legal_hold": _("The weighing and pricing software has changed: a supervisor must "
                        "swipe the supervisor's card to acknowledge it before any sale"),
        "card_cannot_authenticate": _(
            "This {card} cannot answer the station's authentication challenge ({detail}): it "
            "is an older card or not the cooperative's. Do not accept it; its holder gets a "
            "new card at the cooperative office"),
        "card_failed_authentication": _(
            "This {card} failed the authentication challenge: it is not the card the "
            "cooperative issued (a copy?). Keep it and send its holder to the cooperative "
            "office"),
        "card_refused_station": _(
            "This {card} did not accept the station's PSAM ({detail}): the card and the PSAM "
            "in the SAM slot belong to different key sets. Call the cooperative's technician"),
        "psam_unavailable": _("Cards cannot be checked: {reason}. Call the cooperative's "
                              "technician"),
        "m1_not_allowed": _("This station takes CPU cards only: MIFARE (M1) cards are switched "
                            "off here. The farmer gets a CPU card at the cooperative office"),
        "m1_weaker": _("M1 card: the weaker kind (it cannot be challenged; a copy is caught "
                       "only by the bank's counter check)"),
        "blacklist_never": _("No card blacklist from the bank yet (or its age is unknown): "
                             "connect the station"),
        "blacklist_stale": _("The card blacklist is {age_h} h old (over {max_h} h): connect "
                             "the station so that the bank's list can arrive"),
        "blacklist_too_old": _("No sale: the card blacklist is {age_h} h old (over {limit_h} "
                               "h). The station sells again once a fresh list arrives from "
                               "the bank: connect it"),
    }


def _card_kind(lang: Language, kind: str) -> str:
    _ = lang._
    return {"farmer card": _("farmer card"), "staff card": _("staff card")}.get(kind, kind)


def _template(english: str) -> str:
    """A catalogue text as a pattern: its {names} become groups."""
    parts = re.split(r"\{(\w+)\}", english)
    return "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.*)"
                   for i, part in enumerate(parts))


def _patterns(lang: Language) -> list[tuple[re.Pattern, str]]:
    _ = lang._
    table = [
        (r"Swipe a staff card to start\.", _("Put your staff card on the reader to sign in")),
        (r"(?P<name>.+) signed in\. Swipe the farmer's card\.",
         _("{name} signed in. Put the farmer's card on the reader")),
        (r"Clerk signed out after inactivity\. Swipe a staff card to start\.",
         _("Signed out after a while without a sale. Put a staff card on the reader")),
        (r"Clerk signed out\. Swipe a staff card to start\.",
         _("Signed out. Put a staff card on the reader to start")),
        (r"Please wait: the sale is being recorded", _("Please wait: the sale is being recorded")),
        (r"Finish or cancel the current sale first", _("Finish or cancel the current sale first")),
        (r"A clerk must sign in first \(staff card\)",
         _("A clerk must sign in first, with a staff card")),
        (r"Farmer (?P<name>.+) \((?P<id>[^()]+)\)\. Put the cocoons on the scale\.",
         _("Farmer {name} ({id}). Put the cocoons on the scale")),
        (r"Card refused: (?P<reason>.*)", _("Card refused: {reason}")),
        (r"Card removed while writing: the sale stands and the card will be updated at its "
         r"next swipe", _("The card was taken away while it was written: the sale stands, and "
                          "the card gets it at its next swipe")),
        (r"Net (?P<net>\S+) kg \(gross (?P<gross>\S+), tare (?P<tare>\S+)\)\. Enter the grade "
         r"from the sample\.", _("Net {net} kg (gross {gross}, tare {tare}). Enter the "
                                 "sample's measurements")),
        (r"Weight no longer valid \(the scale is silent\): weigh again",
         _("The scale sends no weight: weigh again")),
        (r"Weight no longer valid \(the weight changed\): weigh again",
         _("The weight changed: weigh again")),
        (r"Weight no longer valid \(the weight is not stable\): weigh again",
         _("The weight is not stable: weigh again")),
        (r"Weight no longer valid \((?P<reason>.*)\): weigh again",
         _("The weight cannot be used ({reason}): weigh again")),
        (r"Weigh the cocoons before grading", _("Weigh the cocoons before grading")),
        (r"Net (?P<net>\S+) kg(?P<deductions>(?:, - .*?)?): payable (?P<payable>\S+) kg x "
         r"(?P<price>\S+) yuan/kg = (?P<amount>\S+) yuan\. Grade (?P<grade>\S+)\. Farmer "
         r"confirms\?", _("Net {net} kg{deductions}: payable {payable} kg x {price} yuan/kg = "
                          "{amount} yuan. Grade {grade}. Does the farmer agree?")),
        (r"Supervisor (?P<name>.+) acknowledged the new legally relevant software\. Swipe the "
         r"farmer's card\.", _("Supervisor {name} acknowledged the new weighing and pricing "
                                 "software. Put the farmer's card on the reader")),
        (r"The acknowledgement was NOT recorded: (?P<reason>.*)",
         _("The acknowledgement was NOT recorded: {reason}")),
        (r"Grade (?P<grade>\S+), (?P<price>\S+) yuan/kg, amount (?P<amount>\S+) yuan\. "
         r"Farmer confirms\?", _("Grade {grade}, {price} yuan/kg, amount {amount} yuan. Does "
                                 "the farmer agree?")),
        (r"Grading refused: (?P<reason>.*)", _("Grading refused: {reason}")),
        (r"Nothing to confirm yet", _("Nothing to confirm yet")),
        (r"This card sold the same weight a few minutes ago\. Confirm again only if this is a "
         r"new delivery\.", _("This card sold the same weight a few minutes ago. Confirm "
                              "again only if this is a new delivery")),
        (r"SALE NOT RECORDED: (?P<reason>.*)", _("THE SALE IS NOT RECORDED: {reason}")),
        (r"Sale recorded: voucher (?P<voucher>\S+) \(replaces voucher (?P<old>\S+), now "
         r"voided\)", _("Sale recorded: voucher {voucher} (it replaces voucher {old}, now "
                        "voided)")),
        (r"Sale recorded: voucher (?P<voucher>[^\s.]+)(?: \(replaces voucher \S+, now "
         r"voided\))?\. The card could not be written \((?P<reason>.*)\); it will be updated "
         r"at its next swipe\.", _("Sale recorded: voucher {voucher}. The card could not be "
                                    "written ({reason}); it gets the sale at its next swipe")),
        (r"Sale recorded: voucher (?P<voucher>\S+)", _("Sale recorded: voucher {voucher}")),
        (r"The sale is already being recorded; void it with a supervisor card",
         _("The sale is already being recorded; a supervisor's card can void it")),
        (r"Sale cancelled: cancelled by the clerk", _("Sale cancelled by the clerk")),
        (r"Sale cancelled: farmer card removed before confirmation",
         _("Sale cancelled: the farmer's card was taken away before the confirmation")),
        (r"Sale cancelled: timed out while (?P<step>\S+)",
         _("Sale cancelled: too long without a step ({step})")),
        (r"Sale cancelled: (?P<reason>.*)", _("Sale cancelled: {reason}")),
        (r"Voiding a sale needs a supervisor's staff card",
         _("Voiding a sale needs a supervisor's staff card")),
        (r"Correcting a sale needs a supervisor's staff card",
         _("Correcting a sale needs a supervisor's staff card")),
        (r"Finish or cancel the correction of voucher (?P<voucher>\S+) first",
         _("Finish or cancel the correction of voucher {voucher} first")),
        (r"Correcting voucher (?P<voucher>\S+): swipe the farmer's card, weigh and grade "
         r"again\. The new sale replaces (?P=voucher)\.",
         _("Correcting voucher {voucher}: put the farmer's card on the reader, weigh and grade "
           "again. The new sale replaces {voucher}")),
        (r"Correction of voucher (?P<voucher>\S+) abandoned \((?P<reason>.*)\); the original "
         r"sale stands", _("Correction of voucher {voucher} abandoned ({reason}); the original "
                           "sale stands")),
        (r"Voucher (?P<voucher>\S+) voided \(seq (?P<seq>\d+)\)",
         _("Voucher {voucher} voided (event {seq})")),
        (r"Voucher (?P<voucher>\S+) NOT voided: (?P<reason>.*)",
         _("Voucher {voucher} is NOT voided: {reason}")),
        (r"Voucher (?P<voucher>\S+) paid by the bank \((?P<ref>.*)\)",
         _("Voucher {voucher} paid by the bank ({ref})")),
        (r"Printer fault: (?P<reason>.*)\. The sale is recorded; print it again\.",
         _("Printer fault: {reason}. The sale is recorded; print the voucher again")),
        (r"Printer fault: (?P<reason>.*)\. The day report (?P<day>\d+) is recorded; print it "
         r"again\.",
         _("Printer fault: {reason}. The day report {day} is recorded; print it again")),
        (r"Day (?P<day>\d+) closed: (?P<count>\d+) sales, (?P<amount>\S+) yuan; "
         r"(?P<acked>\d+) acknowledged by the bank\. The report is printed\.",
         _("Day {day} closed: {count} sales, {amount} yuan; {acked} received by the bank. "
           "The report is printed")),
        (r"Voucher (?P<voucher>\S+) printed again \(copy\)",
         _("Voucher {voucher} printed again (copy)")),
        (r"Sign in with your staff card first", _("Sign in with your staff card first")),
        (r"no copy of voucher (?P<voucher>\S+) is kept \(it was recorded by an earlier "
         r"release\)",
         _("No copy of voucher {voucher} is kept (it was recorded by an earlier release)")),
        (r"voucher (?P<voucher>\S+) was voided \(by seq (?P<seq>\d+)\); it cannot be voided",
         _("Voucher {voucher} is already voided")),
        (r"voucher (?P<voucher>\S+) was voided \(by seq (?P<seq>\d+)\); it cannot be corrected",
         _("Voucher {voucher} is voided: it cannot be corrected")),
        (r"voucher (?P<voucher>\S+) is already paid by the bank \((?P<ref>.*)\); it cannot be "
         r"(voided|corrected)", _("Voucher {voucher} is already paid by the bank ({ref}): it "
                                  "cannot be changed at the station")),
        (r"no sale (?P<voucher>\S+) at this station",
         _("No sale {voucher} at this station")),
        (r"WARNING: could not record (?P<what>\S+): (?P<reason>.*)",
         _("WARNING: could not record {what}: {reason}")),
    ]
    keyed = keyed_messages(lang)
    table[:0] = [(_template(CATALOGUE[key]), keyed[key]) for key in CATALOGUE if key in keyed]
    table += reason_patterns(lang)
    return [(re.compile(f"^{pattern}$", re.S), words) for pattern, words in table]


@functools.lru_cache(maxsize=4)
def _table(tag: str) -> list[tuple[re.Pattern, str]]:
    return _patterns(Language(tag))


def known(text: str) -> bool:
    """Whether the table recognises this sentence of the station's (each part of it)."""
    english = Language("en")
    return all(_say(english, part) is not None or (
        "; " in part and all(_say(english, piece) is not None
                             for piece in _reasons(english, part)))
        for part in text.split(" | "))


def flow_words(lang: Language, text: str) -> str:
    """The station's sentence `text` in the clerk's language (as it is, when unknown). The
    card desk's notices follow the flow's sentence after " | "; each is said on its own."""
    if " | " in text:
        return " | ".join(flow_words(lang, part) for part in text.split(" | "))
    said = _say(lang, text)
    if said is not None:
        return said
    if "; " in text:       # the scale's reasons, one after the other (some hold a "; ")
        joint = "；" if lang.tag == "zh-CN" else "; "
        return joint.join(_say(lang, part) or part for part in _reasons(lang, text))
    return text


def _reasons(lang: Language, text: str) -> list[str]:
    """`text` cut at "; " into the longest pieces the table knows (an unknown piece alone)."""
    parts, out, i = text.split("; "), [], 0
    while i < len(parts):
        j = next((j for j in range(len(parts), i + 1, -1)
                  if _say(lang, "; ".join(parts[i:j])) is not None), i + 1)
        out.append("; ".join(parts[i:j]))
        i = j
    return out


def _say(lang: Language, text: str) -> str | None:
    for pattern, words in _table(lang.tag):
        found = pattern.match(text)
        if found:
            values = found.groupdict()
            for name in ("reason", "detail"):   # one of the station's sentences, maybe
                if values.get(name):
                    values[name] = flow_words(lang, values[name])
            if values.get("card"):
                values["card"] = _card_kind(lang, values["card"])
            values = {name: say_value(lang, name, value) for name, value in values.items()}
            return words.format(**values)
    return None

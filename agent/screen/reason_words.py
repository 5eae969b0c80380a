"""The reasons the scale check and the pricing give, in the clerk's language.

They come inside the station's sentences ("Grading refused: {reason}", "The weight cannot be
used ({reason})") and beside the live weight (why it cannot be sold yet). Like the flow's
sentences (agent.screen.flow_words), each is recognised by its fixed words and said again from
the gettext catalog with its values kept; the names of measurements inside them are said as the
grade fields say them. tests/test_screen_words.py makes each reason through the production
code (drivers.scale.sale, agent.contract.pricing, the station's weighing) and fails on one this
table does not know.
"""

from __future__ import annotations

from agent.screen.fields import measure_label
from agent.screen.i18n import Language


def N_(message: str) -> str:
    """Marks a message for `pybabel extract` (one of its default keywords); said through
    `lang._` when the reason is shown."""
    return message


# The scale's and the weighing's reasons (drivers/scale/sale.py, agent/station/weighing.py).
_SCALE = [
    (r"the scale is overloaded", N_("the scale is overloaded")),
    (r"the scale reads below its range", N_("the scale reads below its range")),
    (r"the weight is out of the indicator's range",
     N_("the weight is out of the indicator's range")),
    (r"the scale has not been zeroed since it was switched on: empty the platform and press "
     r"ZERO", N_("the scale has not been zeroed since it was switched on: empty the platform and "
     "press ZERO")),
    (r"the indicator sent no weight", N_("the indicator sent no weight")),
    (r"the indicator shows the tare, not the load",
     N_("the indicator shows the tare, not the load")),
    (r"tare (?P<value>\S+) (?P<unit>\S+) is not whole grams",
     N_("tare {value} {unit} is not whole grams")),
    (r"the weight is not stable", N_("the weight is not stable")),
    (r"stability is unknown \(no indicator flag, no inferred verdict\)",
     N_("stability is unknown (the indicator does not say, and the weight could not be judged)")),
    (r"negative weight (?P<weight>\S+) (?P<unit>\S+): the indicator may hold a tare; empty the "
     r"platform and clear it", N_("negative weight {weight} {unit}: the indicator may hold a "
     "tare; empty the platform and clear it")),
    (r"negative weight (?P<weight>\S+) (?P<unit>\S+)", N_("negative weight {weight} {unit}")),
    (r"the weight (?P<grams>\S+) g is not a whole number of divisions e = (?P<e>\S+) g",
     N_("the weight {grams} g is not a whole number of divisions e = {e} g")),
    (r"the tare (?P<grams>\S+) g is not a whole number of divisions e = (?P<e>\S+) g",
     N_("the tare {grams} g is not a whole number of divisions e = {e} g")),
    (r"the indicator's tare is negative \((?P<grams>\S+) g\)",
     N_("the indicator's tare is negative ({grams} g)")),
    (r"the indicator shows a net weight without its tare: clear the tare on the indicator so "
     r"that it shows the gross weight", N_("the indicator shows a net weight without its tare: "
     "clear the tare on the indicator so that it shows the gross weight")),
    (r"net weight (?P<net>\S+) g after a tare of (?P<tare>\S+) g",
     N_("net weight {net} g after a tare of {tare} g")),
    (r"net (?P<net>\S+) g is below the minimum load (?P<minimum>\S+) g \((?P<e>\d+) e\)",
     N_("net {net} g is below the minimum load {minimum} g ({e} e)")),
    (r"(?P<weight>\S+) (?P<unit>\S+) is above the capacity (?P<capacity>\S+) g \+ 9 e",
     N_("{weight} {unit} is above the capacity {capacity} g + 9 e")),
    (r"the scale showed a negative weight: a tare is held on the indicator\. Empty the platform "
     r"and clear the tare so that it shows 0 before weighing",
     N_("the scale showed a negative weight: a tare is held on the indicator. Empty the platform "
     "and clear the tare so that it shows 0 before weighing")),
]

# The pricing's (agent/contract/pricing): measurements it cannot take, lots it cannot buy.
_PRICING = [
    (r"grade (?P<grade>\S+) is outside the grades the price table prices \((?P<low>\S+) to "
     r"(?P<high>\S+)\): check the sample, or ask the backend for a table that covers it",
     N_("grade {grade} is outside the grades the price table prices ({low} to {high}): check the "
     "sample, or ask the bank for a table that covers it")),
    (r"(?P<measure>.+?) was not measured, but the price table deducts for it; measure the "
     r"sample and enter it \(enter 0 when there is none\)",
     N_("{measure} was not measured, but the price table deducts for it; measure the sample "
        "and enter it (enter 0 when there is none)")),
    (r"(?P<measure>.+?) (?P<value>\S+) % is not a percentage; measure again",
     N_("{measure} {value} % is not a percentage; measure again")),
    (r"(?P<measure>.+?) (?P<value>\S+) % is below the minimum of (?P<limit>\S+) % in the price "
     r"table: the lot cannot be bought as it is",
     N_("{measure} {value} % is below the minimum of {limit} % in the price table: the lot cannot "
     "be bought as it is")),
    (r"(?P<measure>.+?) (?P<value>\S+) % is above the limit of (?P<limit>\S+) % in the price "
     r"table: the lot cannot be bought as it is",
     N_("{measure} {value} % is above the limit of {limit} % in the price table: the lot cannot "
     "be bought as it is")),
    (r"missing sample: this table grades by shell ratio; measure the sample's shell ratio and "
     r"enter shell_ratio_pct", N_("missing sample: this table grades by shell ratio; measure the "
     "sample's shell ratio and enter it")),
    (r"missing sample: this table grades by the dry shell weight of a (?P<sample>\S+) g sample; "
     r"weigh the dried shells and enter shell_g", N_("missing sample: this table grades by the dry "
     "shell weight of a {sample} g sample; weigh the dried shells and enter it")),
    (r"shell_g (?P<value>\S+) g is impossible for a (?P<sample>\S+) g sample; weigh the dried "
     r"shells again", N_("a dry shell of {value} g is impossible for a {sample} g sample; "
                         "weigh the dried shells again")),
    (r"shell ratio (?P<value>\S+) % is impossible; measure again",
     N_("shell ratio {value} % is impossible; measure again")),
    (r"shell ratio (?P<value>\S+) % is below the lowest band of the price table "
     r"\((?P<limit>\S+) %\): these cocoons cannot be bought at this table",
     N_("shell ratio {value} % is below the lowest band of the price table ({limit} %): these "
     "cocoons cannot be bought at this table")),
    (r"shell ratio (?P<value>\S+) % is at or above the top of the price table "
     r"\((?P<limit>\S+) %\): check the measurement, or ask for a table that covers it",
     N_("shell ratio {value} % is at or above the top of the price table ({limit} %): check the "
     "measurement, or ask for a table that covers it")),
    (r"the deductions from the mass add up to (?P<pct>\S+) %: nothing would be paid; the lot "
     r"cannot be bought", N_("the deductions from the weight add up to {pct} %: nothing would be "
     "paid; the lot cannot be bought")),
    (r"the deductions from the price add up to (?P<pct>\S+) %: nothing would be paid; the lot "
     r"cannot be bought", N_("the deductions from the price add up to {pct} %: nothing would be "
     "paid; the lot cannot be bought")),
    (r"the unit price rounds to (?P<price>\S+) yuan/kg; the lot cannot be bought",
     N_("the unit price rounds to {price} yuan/kg; the lot cannot be bought")),
    (r"(?P<field>shell_g|shell_ratio_pct|moisture_pct|reelable_pct) (?P<value>\S+) is negative; "
     r"measure again", N_("{field} {value} is negative; measure again")),
    (r"(?P<kind>\w+) cocoons (?P<value>\S+) % is negative", N_("{kind} {value} % is negative")),
    (r"net weight (?P<net>\S+) g is not positive: check the tare and weigh again",
     N_("net weight {net} g is not positive: check the tare and weigh again")),
    (r"unknown defect kind (?P<kinds>.+); price table (?P<table>\S+ v\d+ \(.*\)) knows: "
     r"(?P<known>.*)", N_("unknown defect kind {kinds}; price table {table} knows: {known}")),
    (r"price table (?P<table>\S+ v\d+ \(.*\)) grades by dry shell weight \(shell_g\); a shell "
     r"ratio was given instead", N_("price table {table} grades by the dry shell weight; a "
                                    "shell ratio was given instead")),
    (r"price table (?P<table>\S+ v\d+ \(.*\)) grades by shell ratio \(shell_ratio_pct\); a dry "
     r"shell weight was given instead", N_("price table {table} grades by shell ratio; a dry "
                                           "shell weight was given instead")),
    (r"net weight (?P<net>\S+) g is beyond any scale; weigh again",
     N_("net weight {net} g is beyond any scale; weigh again")),
]


def reason_patterns(lang: Language) -> list[tuple[str, str]]:
    """(pattern, words in `lang`) for every reason; the words keep the pattern's groups."""
    return [(pattern, lang._(words)) for pattern, words in _SCALE + _PRICING]


def say_value(lang: Language, name: str, value: str) -> str:
    """A value inside a reason in `lang`: measurements as the grade fields name them."""
    if name == "measure":          # the pricing's words: "moisture", "mouldy cocoons"...
        if value == "reelable-cocoon ratio":
            return measure_label(lang, "reelable_pct")
        if value.endswith(" cocoons"):
            return measure_label(lang, "defects_pct." + value[:-len(" cocoons")])
        return measure_label(lang, value)
    if name == "field":
        return measure_label(lang, value)
    if name == "kind":
        return measure_label(lang, "defects_pct." + value)
    if name in ("kinds", "known"):   # defect kinds, listed
        return "、".join(measure_label(lang, "defects_pct." + kind) for kind in value.split(", ")) \
            if lang.tag == "zh-CN" else value
    return value


"""The grade entry fields a price table asks for: one per measurement it uses.

Read from the table in force (its grading method and its deduction rules), so a table with
other defect kinds gets other fields without a change here. The ranges are those of the
measurements themselves (a percentage, a share of the sample's mass); whether a value is
acceptable for a sale is the pricing's to say.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from agent.contract.pricing.deductions import DEFECT_PREFIX
from agent.contract.pricing.grading import DryShellRule
from agent.contract.pricing.tables import PriceTable
from agent.screen.i18n import Language


@dataclass(frozen=True)
class Field:
    name: str         # as the console's grade line names it: shell_g, defects_pct.mouldy...
    unit: str         # "g" or "%"
    low: Decimal
    high: Decimal


def grade_fields(table: PriceTable) -> list[Field]:
    hundred = Decimal(100)
    if isinstance(table.grading, DryShellRule):
        fields = [Field("shell_g", "g", Decimal(0), table.grading.sample_g)]
    else:
        fields = [Field("shell_ratio_pct", "%", Decimal(0), hundred)]
    for rule in table.deductions:
        if rule.measure.startswith(DEFECT_PREFIX):
            name = "defects_pct." + rule.measure[len(DEFECT_PREFIX):]
        else:
            name = f"{rule.measure}_pct"
        fields.append(Field(name, "%", Decimal(0), hundred))
    return fields


def measure_label(lang: Language, name: str) -> str:
    """The words for a measurement (`shell_g`, `defects_pct.mouldy`, `moisture`...)."""
    _ = lang._
    known = {
        "shell_g": _("Dry shell of the sample"),
        "shell_ratio_pct": _("Shell ratio"),
        "moisture_pct": _("Moisture"),
        "reelable_pct": _("Reelable cocoons"),
        "defects_pct.perforated": _("Perforated cocoons"),
        "defects_pct.stained": _("Stained cocoons"),
        "defects_pct.thin": _("Thin-shelled cocoons"),
        "defects_pct.mouldy": _("Mouldy cocoons"),
    }
    name = {"moisture": "moisture_pct", "reelable": "reelable_pct"}.get(name, name)
    if name.startswith("defects."):
        name = "defects_pct." + name[len("defects."):]
    return known.get(name, name.replace("defects_pct.", "").replace("_", " "))

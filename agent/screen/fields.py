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

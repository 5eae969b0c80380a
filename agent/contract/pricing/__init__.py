"""Pure pricing: price tables, grading steps, deductions, exact money and rounding, and the
pricing record that lets anyone recompute a purchase's amount from its event (docs/pricing.md).

No I/O and no clock: the station prices a sale with it and the bank recomputes the same amount.
"""

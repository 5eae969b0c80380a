"""Errors of grading and pricing, under the agent's one root (agent.errors.CocoonError).

The purchase workflow shows a refusal's message to the clerk, and the dispatcher puts a price
table's rejection into `command.failed`, so each message says what was measured or which field
is wrong, and what to do about it.
"""

from __future__ import annotations

from agent.contract.errors import CocoonError


class PricingError(CocoonError):
    """Root of grading and pricing errors."""


class PriceTableError(PricingError, ValueError):
    """A price table document is invalid; `field` names the offending member (dotted path)."""

    def __init__(self, field: str, problem: str):
        self.field = field
        super().__init__(f"price table field {field}: {problem}")


class TableVersionRefused(PricingError):
    """A price table would not advance its season: same or lower version than the current."""


class UnknownPriceTable(PricingError, LookupError):
    """No stored price table has the requested id and version (or season)."""


class MeasurementError(PricingError, ValueError):
    """A measurement is missing or impossible (negative weight, ratio over 100 %, a float)."""


class PurchaseRefused(PricingError):
    """The lot, as measured, cannot be bought under this table (too wet, below the lowest grade,
    deductions that would take the whole lot)."""


class PricingRecordError(PricingError, ValueError):
    """A pricing record is malformed, or was made with another table than the one given."""


class PriceStoreError(PricingError):
    """The stored price tables cannot be read or written."""

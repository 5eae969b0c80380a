"""Exact decimal arithmetic for prices and amounts: no floats, and every rounding named.

Prices, weights and percentages are `Decimal`. The arithmetic of pricing (sums, products,
division by 100, 1000 or 50) is exact, and runs in a context that traps `Inexact`, so a lost
digit is a loud bug rather than a silently wrong amount. Rounding happens only through
`round_to`, with the mode the price table names; the places where it happens are listed in
docs/pricing.md.
"""

from __future__ import annotations

import contextlib
import decimal
import re
from collections.abc import Iterator
from decimal import Decimal
from enum import Enum

FEN = Decimal("0.01")  # amounts are paid to the fen
UNIT_PRICE_QUANTUM = Decimal("0.0001")  # unit prices are kept to 0.0001 yuan/kg

# Inputs are limited in size so that exact products always fit in the context below.
MAX_INT_DIGITS = 12
MAX_FRACTION_DIGITS = 12
DECIMAL_RE = re.compile(
    rf"^-?(0|[1-9][0-9]{{0,{MAX_INT_DIGITS - 1}}})(\.[0-9]{{1,{MAX_FRACTION_DIGITS}}})?$")

_EXACT = decimal.Context(
    prec=200,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.Inexact, decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
_ROUNDING = decimal.Context(prec=200, traps=[decimal.InvalidOperation, decimal.Overflow])


class Rounding(Enum):
    """The rounding modes a price table may choose (the names of Python's decimal module)."""

    HALF_UP = decimal.ROUND_HALF_UP  # ties away from zero: 0.005 -> 0.01
    HALF_EVEN = decimal.ROUND_HALF_EVEN  # ties to the even fen: 0.005 -> 0.00, 0.015 -> 0.02
    DOWN = decimal.ROUND_DOWN  # truncate toward zero: 0.019 -> 0.01


@contextlib.contextmanager
def exact() -> Iterator[None]:
    """Run Decimal arithmetic that must not round (raises decimal.Inexact if it would)."""
    with decimal.localcontext(_EXACT):
        yield


def round_to(value: Decimal, quantum: Decimal, rounding: Rounding) -> Decimal:
    """`value` rounded to a multiple of `quantum` (e.g. FEN) with the table's mode."""
    return value.quantize(quantum, rounding=rounding.value, context=_ROUNDING)


def is_decimal_text(text: object) -> bool:
    """True for a plain decimal string such as "38.50" or "-0.8" (no exponent, no spaces)."""
    return isinstance(text, str) and DECIMAL_RE.match(text) is not None


def to_decimal(value: object, what: str, error: type[Exception]) -> Decimal:
    """An exact Decimal from a Decimal, an int or a plain decimal string; floats are refused.

    `error` is the exception class to raise (a measurement error or a record error), with a
    message naming `what`.
    """
    if isinstance(value, bool):
        raise error(f"{what} must be a decimal, not {value!r}")
    if isinstance(value, float):
        raise error(f"{what} is a float ({value!r}); pass exact values as Decimal or strings")
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str):
        if not is_decimal_text(value):
            raise error(f"{what} must be a plain decimal string like \"9.35\", not {value!r}")
        return Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise error(f"{what} must be a finite number, not {value}")
        if not is_decimal_text(text(value)):
            raise error(f"{what} has too many digits ({value}); at most {MAX_INT_DIGITS} "
                        f"before and {MAX_FRACTION_DIGITS} after the point")
        return value
    raise error(f"{what} must be a Decimal or a decimal string, not {type(value).__name__}")


def text(value: Decimal) -> str:
    """The plain (never exponent) string of a Decimal, keeping its trailing zeros: "38.50"."""
    return format(value, "f")

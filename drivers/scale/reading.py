"""Typed values parsed from scale frames: `Reading` (a weight and its flags) and `Reply` (an
answer to a command that carries no weight).

Weights are `Decimal`, never float: a sale is paid by weight, and 0.1 + 0.2 must stay 0.3.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from .errors import InexactWeight, NoWeight


class Unit(enum.Enum):
    """A weight unit, with its exact size in grams (the pound is 453.59237 g by definition)."""

    MG = "mg"
    G = "g"
    KG = "kg"
    T = "t"
    LB = "lb"

    @property
    def grams(self) -> Decimal:
        return _GRAMS[self]

    def to_grams(self, value: Decimal) -> Decimal:
        """`value` in this unit as exact grams (a Decimal, possibly with a fraction)."""
        return value * self.grams


_GRAMS = {
    Unit.MG: Decimal("0.001"),
    Unit.G: Decimal(1),
    Unit.KG: Decimal(1000),
    Unit.T: Decimal(1000000),
    Unit.LB: Decimal("453.59237"),
}


class WeightKind(enum.Enum):
    """What the displayed value is, where the protocol says so."""

    GROSS = "gross"
    NET = "net"
    TARE = "tare"


@dataclass(frozen=True)
class Reading:
    """One weight from the indicator, as the frame stated it.

    `weight` is the displayed value (None when the frame has none: overload, underload).
    `stable` is the indicator's own flag; None where the protocol has no flag (XK3190-A9,
    XK3190-A12), and then stability must be inferred (see `StabilityDetector`). `kind` says
    whether `weight` is the gross or the net (None: the frame does not say, as the XK3190-A9's
    continuous output). `gross`, `net` and `tare` are set where the frame says or implies
    them; `tare` is the tare the indicator holds, where it reports one. `raw` is the whole frame,
    terminators included, for the sale's digest.
    """

    protocol: str
    raw: bytes
    weight: Decimal | None
    unit: Unit | None
    stable: bool | None = None
    kind: WeightKind | None = None
    gross: Decimal | None = None
    net: Decimal | None = None
    tare: Decimal | None = None
    overload: bool = False
    underload: bool = False
    out_of_range: bool = False
    unzeroed: bool = False

    # `unzeroed`: the indicator says it has not been set to zero since it was switched on
    # (Toledo SWB bit 6, "power up"); its weights are not to be used for a sale until it is.

    def weight_in_grams(self) -> Decimal:
        """The weight as exact grams (may have a fraction); NoWeight if there is none."""
        if self.weight is None or self.unit is None:
            raise NoWeight(f"{self.protocol} reading has no weight "
                           f"({self.condition() or 'no value in the frame'})")
        return self.unit.to_grams(self.weight)

    def grams(self) -> int:
        """The weight as integer grams; InexactWeight if that would need rounding.

        A 0.5 g division, or a weight in pounds, does not fit integer grams; rounding is a
        pricing rule and belongs to the (versioned, signed) price table, not to the driver.
        """
        exact = self.weight_in_grams()
        if exact != exact.to_integral_value():
            raise InexactWeight(f"{self.weight} {self.unit.value} is {exact.normalize():f} g, "
                                "not a whole number of grams; refusing to round")
        return int(exact)

    def condition(self) -> str:
        """'overload', 'underload', 'out of range' or '' (for messages and displays)."""
        if self.overload:
            return "overload"
        if self.underload:
            return "underload"
        if self.out_of_range:
            return "out of range"
        return ""

    def same_weight(self, other: Reading) -> bool:
        """True when both show the same value, unit, kind and tare (where the frame states
        one), with no overload condition."""
        return (self.weight is not None and not self.condition() and not other.condition()
                and self.weight == other.weight and self.unit == other.unit
                and self.kind == other.kind and self.tare == other.tare)


@dataclass(frozen=True)
class Reply:
    """An answer to a command that carries no weight: MT-SICS `Z A`, `S I`, `ES`, `I4 A
    "serial"`; the XK3190-A9 handshake.

    `command` is the answer's identifier (`Z`, `S`, `I4`, `ES`), `status` its status field
    (`A`, `I`, `+`, `-`, or '' when there is none), `fields` what follows, unquoted.
    """

    protocol: str
    raw: bytes
    command: str
    status: str = ""
    fields: tuple[str, ...] = ()

    @property
    def is_error(self) -> bool:
        """True for the MT-SICS error answers: ES syntax, ET transmission, EL logical."""
        return self.protocol == "mt-sics" and self.command in ("ES", "ET", "EL")


Decoded = Reading | Reply
"""What a protocol's `parse(frame)` returns."""

"""May this reading be used for a sale, and which gross, tare and net does it give? A check
with reasons, for the clerk's display.

Class III non-automatic scales (JJG 539, OIML R76 class III/IIII): only a stable weight may be
used; the minimum load (20 e by default) is a minimum of the *net*, what is sold; every weight
is a whole number of divisions e; nothing above Max + 9 e is shown or used; an indicator that
says it has not been zeroed since power-up is not used. The policy is configuration; the rules
are here.

Gross, tare and net (`SaleWeights`, integer grams, always gross = tare + net):

- a gross reading (or one the protocol does not mark, as the XK3190-A9's continuous frame) is
  the gross; the tare is the station's configured basket tare (`tare_g`), and net = gross -
  tare;
- a net reading is the net, and its tare is the one the indicator reports holding (Toledo's
  tare field, MT-SICS `TA`, XK3190-A9 command mode's C); the configured tare is not taken off
  again. A net reading whose tare the indicator does not report (A&D `NT`, XK3190-A12 `WN`,
  an MT-SICS balance without `TA`) is refused: the gross cannot be stated, and taking the
  configured tare off as well would sell the basket twice.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from .errors import InexactWeight
from .reading import Reading, WeightKind

OVER_MAX_DIVISIONS = 9  # OIML R76 4.4.3: no weight above Max + 9 e is displayed or used


class Refusal(enum.Enum):
    """Why a reading may not be used for a sale (the value is a stable code for logs)."""

    NO_WEIGHT = "no_weight"
    OVERLOAD = "overload"
    UNDERLOAD = "underload"
    OUT_OF_RANGE = "out_of_range"
    NOT_ZEROED = "not_zeroed"
    ABOVE_CAPACITY = "above_capacity"
    NEGATIVE = "negative"
    NOT_A_DIVISION = "not_a_division"
    NET_WITHOUT_TARE = "net_without_tare"
    BELOW_MINIMUM = "below_minimum"
    TARE_SHOWN = "tare_shown"
    UNSTABLE = "unstable"


class TareSource(enum.Enum):
    """Where the tare of a sale's weights comes from (recorded with every purchase)."""

    NONE = "none"               # a gross reading and no configured tare
    CONFIGURED = "configured"   # the station's basket tare, [scale] tare_g
    INDICATOR = "indicator"     # the tare the indicator holds and reported
    UNKNOWN = "unknown"         # a net reading whose tare the indicator did not report


@dataclass(frozen=True)
class SalePolicy:
    """`division_g` is e in grams (Decimal, e.g. Decimal("10") or Decimal("0.5")); the
    minimum load is `min_divisions` * e of net; `capacity_g`, if set, is Max: anything
    above Max + 9 e is refused, for indicators whose frames carry no overload flag
    (XK3190-A9)."""

    division_g: Decimal
    min_divisions: int = 20
    capacity_g: Decimal | None = None

    def __post_init__(self):
        if not isinstance(self.division_g, Decimal) or self.division_g <= 0:
            raise ValueError("division_g must be a positive Decimal")
        if self.min_divisions < 0:
            raise ValueError("min_divisions must not be negative")
        if self.capacity_g is not None and not isinstance(self.capacity_g, Decimal):
            raise ValueError("capacity_g must be a Decimal")

    @property
    def minimum_g(self) -> Decimal:
        return self.division_g * self.min_divisions

    @property
    def limit_g(self) -> Decimal | None:
        """Max + 9 e: the heaviest gross a sale may use (None: no capacity configured)."""
        if self.capacity_g is None:
            return None
        return self.capacity_g + OVER_MAX_DIVISIONS * self.division_g


@dataclass(frozen=True)
class SaleWeights:
    """Integer grams (None where unknown), gross = tare + net when all three are known."""

    gross_g: int | None
    tare_g: int | None
    net_g: int | None
    tare_source: TareSource


@dataclass(frozen=True)
class Readiness:
    """The verdict: `ok`, or the reasons (each with a message for people); and the
    weights the reading gives, where it gives any."""

    reasons: tuple[tuple[Refusal, str], ...]
    weights: SaleWeights | None = None

    @property
    def ok(self) -> bool:
        return not self.reasons

    @property
    def codes(self) -> tuple[Refusal, ...]:
        return tuple(code for code, _ in self.reasons)

    def __str__(self) -> str:
        return "ready" if self.ok else "; ".join(msg for _, msg in self.reasons)


def sale_weights(reading: Reading, tare_g: int = 0) -> SaleWeights:
    """Gross, tare and net of `reading` with the station's configured tare `tare_g` (see the
    module's docstring). Raises NoWeight or InexactWeight (a weight or tare that is not whole
    grams)."""
    shown = reading.grams()
    if reading.kind is WeightKind.NET:
        if reading.tare is None:
            return SaleWeights(None, None, shown, TareSource.UNKNOWN)
        tare = _whole_grams(reading, reading.tare)
        return SaleWeights(shown + tare, tare, shown, TareSource.INDICATOR)
    source = TareSource.CONFIGURED if tare_g else TareSource.NONE
    return SaleWeights(shown, tare_g, shown - tare_g, source)


def check_sale(reading: Reading, policy: SalePolicy, *, stable: bool | None = None,
               tare_g: int = 0) -> Readiness:
    """Check `reading` against `policy`, with the station's configured tare `tare_g`.

    `stable` is the inferred verdict (`StabilityDetector`) for protocols without a flag. The
    indicator's own flag, where it has one, wins when it says unstable; a reading is stable
    only if its flag, or else `stable`, says so.
    """
    reasons: list[tuple[Refusal, str]] = []
    weights = None
    if reading.overload:
        reasons.append((Refusal.OVERLOAD, "the scale is overloaded"))
    if reading.underload:
        reasons.append((Refusal.UNDERLOAD, "the scale reads below its range"))
    if reading.out_of_range:
        reasons.append((Refusal.OUT_OF_RANGE, "the weight is out of the indicator's range"))
    if reading.unzeroed:
        reasons.append((Refusal.NOT_ZEROED, "the scale has not been zeroed since it was "
                        "switched on: empty the platform and press ZERO"))
    if reading.weight is None or reading.unit is None:
        if not reasons:
            reasons.append((Refusal.NO_WEIGHT, "the indicator sent no weight"))
    elif reading.kind is WeightKind.TARE:
        reasons.append((Refusal.TARE_SHOWN, "the indicator shows the tare, not the load"))
    else:
        try:
            weights = sale_weights(reading, tare_g)
        except InexactWeight as exc:
            reasons.append((Refusal.NOT_A_DIVISION, str(exc)))
        else:
            reasons += _weight_reasons(reading, weights, policy)
    effective = reading.stable if reading.stable is not None else stable
    if effective is not True:
        reasons.append((Refusal.UNSTABLE, "the weight is not stable" if effective is False
                        else "stability is unknown (no indicator flag, no inferred verdict)"))
    return Readiness(tuple(reasons), weights)


def _weight_reasons(reading: Reading, w: SaleWeights, policy: SalePolicy
                    ) -> list[tuple[Refusal, str]]:
    reasons = []
    unit, e = reading.unit.value, policy.division_g
    shown = reading.weight_in_grams()
    if shown < 0:
        hint = ("" if reading.kind is not None else
                ": the indicator may hold a tare; empty the platform and clear it")
        reasons.append((Refusal.NEGATIVE, f"negative weight {reading.weight} {unit}{hint}"))
    for name, grams in (("weight", shown), ("tare", w.tare_g)):
        if grams is not None and grams % e:
            reasons.append((Refusal.NOT_A_DIVISION,
                            f"the {name} {Decimal(grams).normalize():f} g is not a whole "
                            f"number of divisions e = {e.normalize():f} g"))
    if w.tare_g is not None and w.tare_g < 0:
        reasons.append((Refusal.NEGATIVE, f"the indicator's tare is negative ({w.tare_g} g)"))
    if w.tare_source is TareSource.UNKNOWN:
        reasons.append((Refusal.NET_WITHOUT_TARE,
                        "the indicator shows a net weight without its tare: clear the tare "
                        "on the indicator so that it shows the gross weight"))
    if shown >= 0 and w.net_g is not None and w.net_g <= 0 and w.tare_g:
        reasons.append((Refusal.BELOW_MINIMUM,
                        f"net weight {w.net_g} g after a tare of {w.tare_g} g"))
    elif shown >= 0 and w.net_g is not None and w.net_g < policy.minimum_g:
        reasons.append((Refusal.BELOW_MINIMUM,
                        f"net {w.net_g} g is below the minimum load "
                        f"{policy.minimum_g.normalize():f} g ({policy.min_divisions} e)"))
    limit = policy.limit_g
    gross = w.gross_g if w.gross_g is not None else shown
    if limit is not None and gross > limit:
        reasons.append((Refusal.ABOVE_CAPACITY,
                        f"{reading.weight} {unit} is above the capacity "
                        f"{policy.capacity_g.normalize():f} g + 9 e"))
    return reasons


def _whole_grams(reading: Reading, value: Decimal) -> int:
    exact = reading.unit.to_grams(value)
    if exact != exact.to_integral_value():
        raise InexactWeight(f"tare {value} {reading.unit.value} is not whole grams")
    return int(exact)

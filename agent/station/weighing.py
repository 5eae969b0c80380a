"""From a scale's readings to the weight a sale may use.

Joins the scale driver's pieces (stability, sale readiness) with the station's tare into the
`purchase.Weighing` the purchase flow understands. Gross, tare and net are integer grams, and
always gross = tare + net, so anyone can recompute one from the other two:

- a gross reading (or one the protocol does not mark, such as the XK3190-A9's continuous
  frame) is the gross; the tare is the station's configured `tare_g` (the crate or basket)
  and net = gross - tare;
- a net reading is the net. With the indicator's tare in the frame (Toledo, or XK3190-A9
  command mode asking for tare and net) tare is that tare and gross = net + tare; the
  configured tare is not applied on top, the indicator has taken it already;
- a net reading without its tare (A&D `NT`, XK3190-A12 `WN`, an XK3190-A9 `D` answer alone)
  is refused for a sale: the tare the indicator subtracted is unknown, so the gross cannot be
  stated, and applying the configured tare again would sell the basket twice.

A weight that is not a whole number of grams is refused rather than rounded.
"""

from __future__ import annotations

from decimal import Decimal

from agent.station.purchase import Weighing
from drivers.scale import InexactWeight, Reading, SalePolicy, StabilityDetector, check_sale
from drivers.scale.reading import WeightKind

NET_WITHOUT_TARE = ("the indicator shows a net weight without its tare: clear the tare on the "
                    "indicator so that it shows the gross weight")


class ScaleJudge:
    def __init__(self, scale_id: str, policy: SalePolicy, *, tare_g: int = 0,
                 detector: StabilityDetector | None = None):
        self.scale_id = scale_id
        self.policy = policy
        self.tare_g = tare_g
        self.detector = detector or StabilityDetector()

    def feed(self, reading: Reading, now: float) -> Weighing:
        stability = self.detector.feed(reading, now)
        readiness = check_sale(reading, self.policy, stable=stability.stable)
        gross = net = None
        tare: int | None = self.tare_g
        problems = [] if readiness.ok else [str(readiness)]
        try:
            if reading.weight is not None and reading.unit is not None:
                if reading.kind is WeightKind.NET:
                    net = reading.grams()
                    if reading.tare is None:
                        tare = None
                        problems.append(NET_WITHOUT_TARE)
                    else:
                        tare = int(_grams(reading, reading.tare))
                        gross = net + tare
                        if tare < 0:
                            problems.append(f"the indicator's tare is negative ({tare} g)")
                else:
                    gross = reading.grams()
                    net = gross - tare
        except InexactWeight as exc:
            gross = net = None
            problems.append(str(exc))
        if not problems and net is not None and net <= 0:
            problems.append(f"net weight {net} g after a tare of {tare} g")
        ok = not problems and net is not None
        reason = "; ".join(problems)
        return Weighing(
            scale_id=self.scale_id, gross_g=gross, tare_g=tare, net_g=net,
            stable=bool(stability.stable), sale_ok=ok, reason=reason,
            frames_digest=stability.digest or "",
        )


def _grams(reading: Reading, value: Decimal) -> Decimal:
    exact = reading.unit.to_grams(value)
    if exact != exact.to_integral_value():
        raise InexactWeight(f"tare {value} {reading.unit.value} is not whole grams")
    return exact

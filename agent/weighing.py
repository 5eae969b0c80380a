"""From a scale's readings to the weight a sale may use.

Joins the scale driver's pieces (stability, sale readiness) with the station's tare into the
`purchase.Weighing` the purchase flow understands. The tare comes from the indicator where its
frame reports one (net and tare shown), otherwise from the station's configuration (the crate or
basket weight). Gross, tare and net are integer grams; a weight that is not a whole number of
grams is refused rather than rounded.
"""

from __future__ import annotations

from decimal import Decimal

from drivers.scale import InexactWeight, Reading, SalePolicy, StabilityDetector, check_sale
from drivers.scale.reading import WeightKind

from .purchase import Weighing


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
        tare = self.tare_g
        reason = "" if readiness.ok else str(readiness)
        try:
            if reading.weight is not None and reading.unit is not None:
                if reading.kind is WeightKind.NET and reading.tare is not None:
                    net = reading.grams()
                    tare = int(_grams(reading, reading.tare))
                    gross = net + tare
                else:
                    gross = reading.grams()
                    net = gross - tare
        except InexactWeight as exc:
            gross = net = None
            reason = str(exc)
        ok = readiness.ok and net is not None and net > 0
        if readiness.ok and net is not None and net <= 0:
            reason = f"net weight {net} g after a tare of {tare} g"
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

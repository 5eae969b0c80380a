"""From a scale's readings to the weight a sale may use.

Joins the scale driver's pieces (stability, `check_sale`, which says gross, tare and net and
why a reading may not be sold) with the station's basket tare into the `purchase.Weighing`
the purchase flow understands. Gross, tare and net are integer grams, and always gross = tare
+ net, so anyone can recompute one from the other two; the rules are `drivers.scale.sale`'s.

One more guard lives here, because it needs memory: an indicator whose frames do not say
gross or net (the XK3190-A9's continuous output) cannot tell the station that the clerk
pressed TARE on it, and the basket would then be taken off twice. When such an indicator shows
a stable negative weight (the empty platform with a tare held reads minus the tare), the
station refuses to sell until it shows a stable zero again with the tare cleared. Command mode
(`xk3190-a9?mode=command`) asks the indicator for its tare and needs no such guess.
"""

from __future__ import annotations

from agent.station.purchase import Weighing
from drivers.scale import Reading, SalePolicy, StabilityDetector, check_sale

HELD_TARE = ("the scale showed a negative weight: a tare is held on the indicator. Empty the "
             "platform and clear the tare so that it shows 0 before weighing")


class ScaleJudge:
    def __init__(self, scale_id: str, policy: SalePolicy, *, tare_g: int = 0,
                 detector: StabilityDetector | None = None, protocol: str = ""):
        self.scale_id = scale_id
        self.policy = policy
        self.tare_g = tare_g
        self.detector = detector or StabilityDetector()
        self.held_tare = False
        # The weighing parameters in force, recorded with every purchase (OIML R76: which
        # instrument settings weighed it): protocol, e, Min and Max (+ 9 e is the limit).
        self.instrument = {"protocol": protocol, "division_g": _text(policy.division_g),
                           "min_g": _text(policy.minimum_g),
                           **({"max_g": _text(policy.capacity_g)}
                              if policy.capacity_g is not None else {})}

    def feed(self, reading: Reading, now: float) -> Weighing:
        stability = self.detector.feed(reading, now)
        readiness = check_sale(reading, self.policy, stable=stability.stable,
                               tare_g=self.tare_g)
        weights = readiness.weights
        problems = [] if readiness.ok else [str(readiness)]
        self._watch_held_tare(reading, bool(stability.stable))
        if self.held_tare:
            problems.append(HELD_TARE)
        ok = not problems and weights is not None and weights.net_g is not None
        return Weighing(
            scale_id=self.scale_id,
            gross_g=weights.gross_g if weights else None,
            tare_g=weights.tare_g if weights else self.tare_g,
            net_g=weights.net_g if weights else None,
            stable=bool(stability.stable), sale_ok=ok, reason="; ".join(problems),
            frames_digest=stability.digest or "",
            tare_source=weights.tare_source.value if weights else "",
            instrument=self.instrument,
        )

    def _watch_held_tare(self, reading: Reading, stable: bool) -> None:
        if reading.kind is not None or reading.weight is None or not stable:
            return
        if reading.weight < 0:
            self.held_tare = True
        elif reading.weight == 0:
            self.held_tare = False


def _text(value) -> str:
    return f"{value.normalize():f}"

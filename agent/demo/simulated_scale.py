"""Simulated inputs for the demo: a scale on a purchase bench, producing weighings.

Each step puts a random load of fresh cocoons on the simulated platform; the weight (integer
grams, as an indicator with e = 10 g would display it) becomes a `scale.reading` event. It exists
so that a new machine shows real events flowing end to end before any hardware is attached.
"""

from __future__ import annotations

import random

from agent.contract.events import Draft


class SimulatedScale:
    def __init__(self, outbox, scale_id: str = "sim-scale-1", rng: random.Random | None = None):
        self.outbox = outbox
        self.scale_id = scale_id
        self.rng = rng or random.Random()
        self.count = 0

    def step(self) -> int:
        self.count += 1
        grams = self.rng.randrange(5_000, 80_000, 10)  # 5-80 kg in 10 g divisions
        return self.outbox.append(Draft("scale.reading", "telemetry", {
            "scale": self.scale_id,
            "reading": self.count,
            "net_g": str(grams),
            "stable": True,
        }))

"""Store-room climate: dried cocoons keep at 60-70 % relative humidity.

A pure state machine over readings in hundredths (see drivers.climate): crossings of the band
are alerts, with hysteresis so a reading hovering at the limit raises one alert, not dozens;
readings go out as down-sampled telemetry (the mean, minimum and maximum of each period). A
sensor that stops answering is one alert until it answers again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from agent.contract.events import Draft


@dataclass(frozen=True)
class ClimateSettings:
    rh_low_c100: int = 6000
    rh_high_c100: int = 7000
    hysteresis_c100: int = 200
    telemetry_every_ms: int = 300_000


def c100(value: int) -> str:
    """Hundredths as an exact decimal string: 6542 -> "65.42"."""
    return str(Decimal(value).scaleb(-2))


def _mean(values: list[int]) -> int:
    return int((Decimal(sum(values)) / len(values)).quantize(Decimal(1), ROUND_HALF_EVEN))


@dataclass
class ClimateWatch:
    settings: ClimateSettings = field(default_factory=ClimateSettings)
    band: str = "ok"            # ok, high, low
    failed: str = ""            # the sensor's fault while it has one
    last: tuple[int, int] | None = None
    _window: list[tuple[int, int]] = field(default_factory=list)
    _window_start: int | None = None

    def reading(self, temp_c100: int, rh_c100: int, now_ms: int) -> list[Draft]:
        s = self.settings
        drafts = []
        if self.failed:
            drafts.append(Draft("climate.sensor_restored", "alert", {"was": self.failed}))
            self.failed = ""
        self.last = (temp_c100, rh_c100)
        band = self.band
        if band == "ok":
            band = "high" if rh_c100 > s.rh_high_c100 else "low" if rh_c100 < s.rh_low_c100 \
                else "ok"
        elif band == "high" and rh_c100 <= s.rh_high_c100 - s.hysteresis_c100:
            band = "low" if rh_c100 < s.rh_low_c100 else "ok"
        elif band == "low" and rh_c100 >= s.rh_low_c100 + s.hysteresis_c100:
            band = "high" if rh_c100 > s.rh_high_c100 else "ok"
        if band != self.band:
            body = {"rh_pct": c100(rh_c100), "temp_c": c100(temp_c100),
                    "rh_low": c100(s.rh_low_c100), "rh_high": c100(s.rh_high_c100)}
            if band == "ok":
                drafts.append(Draft("climate.in_range", "alert", {**body, "was": self.band}))
            else:
                drafts.append(Draft("climate.out_of_range", "alert", {**body, "band": band}))
            self.band = band
        if self._window_start is None:
            self._window_start = now_ms
        self._window.append((temp_c100, rh_c100))
        if now_ms - self._window_start >= s.telemetry_every_ms:
            drafts.append(self._summary(now_ms))
        return drafts

    def restore(self, band: str, failed: str) -> None:
        """Start where the watch was before a restart: out of the band (`high`/`low`) while
        its alert is open, the sensor failed while that alert is open. The next reading in
        range (or the next good one) then closes the alert instead of leaving it open."""
        if band in ("high", "low"):
            self.band = band
        self.failed = failed

    def failure(self, detail: str) -> list[Draft]:
        if self.failed:
            return []
        self.failed = detail or "no answer"
        return [Draft("climate.sensor_failed", "alert", {"detail": self.failed[:300]})]

    def _summary(self, now_ms: int) -> Draft:
        temps = [t for t, _ in self._window]
        rhs = [h for _, h in self._window]
        draft = Draft("climate.reading", "telemetry", {
            "temp_c": c100(_mean(temps)), "rh_pct": c100(_mean(rhs)),
            "rh_min": c100(min(rhs)), "rh_max": c100(max(rhs)),
            "samples": len(rhs), "period_s": (now_ms - self._window_start) // 1000,
        })
        self._window, self._window_start = [], now_ms
        return draft

"""Doors, the enclosure's tamper switch and the power signal, as a pure state machine.

Inputs arrive as raw pin levels with a monotonic time; a level counts only after it has held
for the debounce time (a door contact chatters when the door is slammed). Confirmed changes
become drafts: a door opened outside the configured hours is an alert (and sounds the siren),
inside them it is telemetry; tamper and power changes are always alerts.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import time as dtime

from agent.contract.events import Draft
from agent.errors import ConfigError

_HOURS_RE = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")


class Kind(enum.StrEnum):
    DOOR = "door"
    TAMPER = "tamper"
    POWER = "power"


@dataclass(frozen=True)
class Hours:
    """Opening hours in local time, minutes of the day; start > end wraps past midnight;
    an empty range (start == end) means the doors are never to be opened."""

    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> Hours:
        m = _HOURS_RE.match(text.strip()) if isinstance(text, str) else None
        if text == "":
            return cls(0, 0)
        if not m:
            raise ConfigError(f"opening hours {text!r}: expected HH:MM-HH:MM, e.g. 07:00-19:00")
        h1, m1, h2, m2 = map(int, m.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise ConfigError(f"opening hours {text!r}: not a time of day")
        return cls(h1 * 60 + m1, h2 * 60 + m2)

    def contains(self, when: dtime) -> bool:
        minute = when.hour * 60 + when.minute
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def __str__(self) -> str:
        return "never" if self.start == self.end else \
            f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"


class Debouncer:
    """A level is accepted once it has held for `stable_ms` (fed with every sample)."""

    def __init__(self, stable_ms: int, level: bool, now_ms: int):
        self.stable_ms = stable_ms
        self.level = level
        self._candidate = level
        self._since = now_ms

    def feed(self, level: bool, now_ms: int) -> bool | None:
        """The newly accepted level, or None when nothing changed."""
        if level != self._candidate:
            self._candidate, self._since = level, now_ms
        if self._candidate != self.level and now_ms - self._since >= self.stable_ms:
            self.level = self._candidate
            return self.level
        return None


@dataclass(frozen=True)
class Input:
    name: str
    kind: Kind
    alarm_high: bool   # True: a high level means open / tampered / power lost


class Guard:
    def __init__(self, inputs: list[Input], hours: Hours, debounce_ms: int):
        self.inputs = {i.name: i for i in inputs}
        self.hours = hours
        self.debounce_ms = debounce_ms
        self._deb: dict[str, Debouncer] = {}
        self.alarm: dict[str, bool] = {}
        self._out_of_hours: dict[str, bool] = {}

    def start(self, levels: dict[str, bool], now_ms: int, local: dtime,
              open_alarms: Iterable[str] = ()) -> list[Draft]:
        """Take the levels at start-up as they are. `open_alarms` names the inputs whose alert
        is still open from before the restart (a door opened out of hours, an open enclosure,
        a lost power supply): one still in alarm is not reported again, one found normal is
        cleared at once (`door.closed`, `tamper.cleared`, `power.restored`), so no alert stays
        open because the agent was down when it ended. Any other input in alarm is reported."""
        drafts = []
        still_open = set(open_alarms)
        for name, inp in self.inputs.items():
            self._deb[name] = Debouncer(self.debounce_ms, levels[name], now_ms)
            self.alarm[name] = name in still_open
            if self.alarm[name] and inp.kind is Kind.DOOR:
                self._out_of_hours[name] = True    # only those are alerts
            drafts += self._change(inp, levels[name] == inp.alarm_high, local)
        return drafts

    def sample(self, name: str, level: bool, now_ms: int, local: dtime) -> list[Draft]:
        accepted = self._deb[name].feed(level, now_ms)
        if accepted is None:
            return []
        inp = self.inputs[name]
        return self._change(inp, accepted == inp.alarm_high, local)

    def _change(self, inp: Input, alarm: bool, local: dtime) -> list[Draft]:
        if self.alarm.get(inp.name) == alarm:
            return []
        self.alarm[inp.name] = alarm
        if inp.kind is Kind.DOOR:
            if alarm:
                out = not self.hours.contains(local)
                self._out_of_hours[inp.name] = out
                return [Draft("door.opened", "alert" if out else "telemetry",
                              {"door": inp.name, "out_of_hours": out,
                               "hours": str(self.hours), "local_time": local.strftime("%H:%M")})]
            out = self._out_of_hours.pop(inp.name, False)
            return [Draft("door.closed", "alert" if out else "telemetry",
                          {"door": inp.name, "opened_out_of_hours": out})]
        if inp.kind is Kind.TAMPER:
            return [Draft("tamper.detected" if alarm else "tamper.cleared", "alert",
                          {"input": inp.name})]
        return [Draft("power.lost" if alarm else "power.restored", "alert",
                      {"input": inp.name})]

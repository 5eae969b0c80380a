"""The clerk's keys at the station terminal: one short command per line.

    g shell_g=9.6 moisture_pct=15 reelable_pct=92 defects_pct.mouldy=1.5   grade the sample
    c          confirm (the farmer agreed; again to confirm a look-alike sale)
    x          cancel the current sale
    v VOUCHER REASON...   void a recorded sale (a supervisor must be signed in)
    r VOUCHER REASON...   correct a recorded sale: the next sale replaces it (supervisor)
    o          sign the clerk out
    q          leave the screen (the agent stops with it)

`parse_key` is pure: it turns a line into what the station must do, or raises `KeyError_`
with words for the clerk. `Console` runs the screen: it redraws when the station changes and
feeds the parsed keys to the station.
"""

from __future__ import annotations

import re
import sys
import threading
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from agent.errors import EXPECTED, CocoonError
from agent.station import purchase as p
from agent.station import sales

MEASUREMENTS = ("shell_g", "shell_ratio_pct", "moisture_pct", "reelable_pct")
_DEFECT = re.compile(r"^defects_pct\.([a-z_]{1,32})$")


class ClerkKeyError(CocoonError):
    """A line the station cannot act on; the message says what to type instead."""


@dataclass(frozen=True)
class Grade:
    measurements: dict


@dataclass(frozen=True)
class VoidRequest:
    voucher: str
    reason: str


@dataclass(frozen=True)
class CorrectRequest:
    voucher: str
    reason: str


@dataclass(frozen=True)
class Quit:
    pass


def parse_key(line: str):
    """A clerk's line -> a flow input, Grade, VoidRequest, CorrectRequest or Quit."""
    words = line.split()
    if not words:
        raise ClerkKeyError("type a command: g (grade), c, x, v, r, o or q")
    key, args = words[0].lower(), words[1:]
    simple = {"c": p.Confirm(), "x": p.Cancel(), "o": p.SignOut(), "q": Quit()}
    if key in simple:
        if args:
            raise ClerkKeyError(f"{key} takes nothing after it")
        return simple[key]
    if key == "g":
        return Grade(parse_measurements(args))
    if key == "v":
        if len(args) < 2:
            raise ClerkKeyError("void: v VOUCHER REASON (the reason is required)")
        return VoidRequest(args[0], " ".join(args[1:])[:200])
    if key == "r":
        if len(args) < 2:
            raise ClerkKeyError("correct: r VOUCHER REASON (the reason is required)")
        return CorrectRequest(args[0], " ".join(args[1:])[:200])
    raise ClerkKeyError(f"unknown key {key!r}: use g, c, x, v, r, o or q")


def parse_measurements(args: list[str]) -> dict:
    out: dict = {}
    defects: dict[str, str] = {}
    for arg in args:
        name, sep, value = arg.partition("=")
        if not sep or not value:
            raise ClerkKeyError(f"{arg!r}: write name=value, e.g. shell_g=9.6")
        try:
            number = Decimal(value)
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite() or number < 0:
            raise ClerkKeyError(f"{name}: {value!r} is not a measurement (a number like 9.6)")
        defect = _DEFECT.match(name)
        if defect:
            defects[defect.group(1)] = value
        elif name in MEASUREMENTS:
            out[name] = value
        else:
            raise ClerkKeyError(f"unknown measurement {name!r}: use "
                                f"{', '.join(MEASUREMENTS)} or defects_pct.KIND")
    if "shell_g" not in out and "shell_ratio_pct" not in out:
        raise ClerkKeyError("grading needs shell_g (dry shell of the sample, g) or "
                            "shell_ratio_pct")
    if defects:
        out["defects_pct"] = defects
    return out


def apply_key(part, action) -> bool:
    """Carry out a parsed key on the station part; False when the clerk quits."""
    if isinstance(action, Quit):
        return False
    if isinstance(action, Grade):
        part.grade(action.measurements)
    elif isinstance(action, VoidRequest):
        sale = sales.find(part.outbox, voucher=action.voucher)
        sales.check_open(sale, "voided")  # said at once; checked again when recorded
        part.submit(p.Void(sale.seq, sale.voucher, action.reason))
    elif isinstance(action, CorrectRequest):
        sale = sales.find(part.outbox, voucher=action.voucher)
        sales.check_open(sale, "corrected")  # before anyone weighs again
        part.submit(p.Correct(sale.seq, sale.voucher, action.reason))
    else:
        part.submit(action)
    return True


class Console:
    """The station screen on a terminal: redrawn on change, keys read line by line."""

    def __init__(self, part, *, stdin=None, stdout=None):
        self.part = part
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.clear = self.stdout.isatty()

    def run(self, stop: threading.Event) -> None:
        drawer = threading.Thread(target=self._draw_loop, args=(stop,), daemon=True,
                                  name="station-screen")
        drawer.start()
        try:
            for line in self.stdin:
                if stop.is_set():
                    break
                try:
                    if not apply_key(self.part, parse_key(line)):
                        break
                except EXPECTED as exc:
                    self.part._show(str(exc))
        finally:
            stop.set()
            drawer.join(timeout=2)

    def _draw_loop(self, stop: threading.Event) -> None:
        version = -1
        while not stop.is_set():
            version = self.part.wait_change(version, timeout=1.0)
            text = self.part.screen()
            prefix = "\x1b[H\x1b[2J" if self.clear else "\n"
            self.stdout.write(prefix + text + "\n")
            self.stdout.flush()

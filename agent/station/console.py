"""The clerk's keys at the station terminal: one short command per line.

    g shell_g=9.6 moisture_pct=15 reelable_pct=92 defects_pct.mouldy=1.5   grade the sample
    c          confirm (the farmer agreed; again to confirm a look-alike sale)
    x          cancel the current sale
    v VOUCHER REASON...   void a recorded sale (a supervisor must be signed in)
    r VOUCHER REASON...   correct a recorded sale: the next sale replaces it (supervisor)
    p VOUCHER  print a recorded sale's voucher again (marked as a copy)
    e          end of day: record day.closed with the day's totals and print the report
    o          sign the clerk out
    q          leave the screen (the agent stops with it)

`parse_key` is pure: it turns a line into what the station must do, or raises `KeyError_`
with words for the clerk. `Console` runs the screen: it redraws when the station changes and
feeds the parsed keys to the station.
"""

from __future__ import annotations

import os
import re
import select
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from agent.errors import EXPECTED, CocoonError
from agent.station import purchase as p
from agent.station import sales
from agent.station.effects import CloseDay, Reprint

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
        raise ClerkKeyError("type a command: g (grade), c, x, v, r, p, e, o or q")
    key, args = words[0].lower(), words[1:]
    simple = {"c": p.Confirm(), "x": p.Cancel(), "o": p.SignOut(), "q": Quit(),
              "e": CloseDay()}
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
    if key == "p":
        if len(args) != 1:
            raise ClerkKeyError("print a copy: p VOUCHER")
        return Reprint(args[0])
    raise ClerkKeyError(f"unknown key {key!r}: use g, c, x, v, r, p, e, o or q")


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
    """The station screen on a terminal: redrawn on change, keys read line by line.

    The screen is drawn by the calling thread and the keys are read by a thread of their own,
    from the descriptor itself with a timeout, so that a stop (SIGTERM, Ctrl-C, `q`, the end of
    the input) ends the console at once, without waiting for a line. `run` returns only once
    the screen is no longer drawn, so the agent may close the outbox after it.
    """

    def __init__(self, part, *, stdin=None, stdout=None):
        self.part = part
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.clear = self.stdout.isatty()

    def run(self, stop: threading.Event, *, agent_stopped: threading.Event | None = None) -> None:
        """Draw and take keys until `stop` (or `agent_stopped`, the agent's own stop) is set."""
        keys = threading.Thread(target=self._key_loop, args=(stop,), daemon=True,
                                name="station-keys")
        keys.start()
        version = -1

        def stopped() -> bool:
            return stop.is_set() or (agent_stopped is not None and agent_stopped.is_set())

        try:
            while not stopped():
                try:
                    text = self.part.screen()
                except sqlite3.ProgrammingError:    # the agent stopped and closed the outbox
                    if stopped():
                        return
                    raise
                prefix = "\x1b[H\x1b[2J" if self.clear else "\n"
                self.stdout.write(prefix + text + "\n")
                self.stdout.flush()
                deadline = time.monotonic() + 1.0
                seen = version
                while seen == version and not stopped() and time.monotonic() < deadline:
                    seen = self.part.wait_change(version, timeout=0.2)
                version = seen
        finally:
            stop.set()

    def _key_loop(self, stop: threading.Event) -> None:
        for line in self._lines(stop):
            try:
                if not apply_key(self.part, parse_key(line)):
                    break
            except EXPECTED as exc:
                self.part._show(str(exc))
        stop.set()

    def _lines(self, stop: threading.Event):
        """The input's lines until its end or `stop`; a real descriptor is polled, so that
        the thread notices `stop` without a line arriving."""
        try:
            fd = self.stdin.fileno()
        except (AttributeError, OSError, ValueError):
            yield from (line for line in self.stdin if not stop.is_set())
            return
        pending = b""
        while not stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                if pending:
                    yield pending.decode("utf-8", "replace")
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                yield line.decode("utf-8", "replace")

"""A&D-style ASCII output, as A&D indicators and many Asian indicators send it.

    ST,GS,+0012.34kg CR LF      (18 bytes)

Header 1: ST stable, US unstable, OL overload. Header 2: GS gross, NT net, TR tare (the value
shown is the tare). Then eight characters of signed number with its decimal point, and a
2-character unit: `kg`, ` g`, ` t`, `lb`. On overload the digits become blanks and the point
stays: `OL,GS,+    .  kg`.

Some A&D balances use a shorter layout without header 2 and with a 9-character number and a
3-character unit, `ST,+00081.72  g` (17 bytes); it is accepted too. *Unconfirmed:* what an
underload looks like; `OL` with a '-' sign is taken as underload.
"""

from __future__ import annotations

import re
from decimal import Decimal

from .errors import MalformedFrame, UnsupportedUnit
from .framing import LineFramer
from .reading import Reading, Unit, WeightKind

NAME = "ad-ascii"
INDICATOR_LEN, BALANCE_LEN = 18, 17
STABLE = {b"ST": True, b"US": False}
KINDS = {b"GS": WeightKind.GROSS, b"NT": WeightKind.NET, b"TR": WeightKind.TARE}
UNITS = {b"kg": Unit.KG, b"g": Unit.G, b"t": Unit.T, b"lb": Unit.LB, b"mg": Unit.MG}
_NUMBER = re.compile(rb"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def _find_start(line: bytes) -> int:
    """The frame is the last 18 bytes (two headers) or the last 17 (one header)."""
    for length, commas in ((INDICATOR_LEN, (2, 5)), (BALANCE_LEN, (2,))):
        start = len(line) - length
        if start >= 0 and all(line[start + i] == ord(",") for i in commas):
            return start
    return -1


def framer() -> LineFramer:
    return LineFramer(_find_start, max_len=64)


def parse(frame: bytes) -> Reading:
    """One line (with its CR LF) as a Reading. Raises MalformedFrame or UnsupportedUnit."""
    if not frame.endswith(b"\r\n") or len(frame) not in (INDICATOR_LEN, BALANCE_LEN):
        raise MalformedFrame("not an A&D line (16 or 15 characters and CR LF)", frame)
    line = frame[:-2]
    if len(frame) == INDICATOR_LEN:
        if line[2:3] != b"," or line[5:6] != b",":
            raise MalformedFrame("A&D line must be HH,HH,number unit", frame)
        header, kind_code, number, unit_code = line[:2], line[3:5], line[6:14], line[14:16]
        kind = KINDS.get(kind_code)
        if kind is None:
            raise MalformedFrame(f"A&D header 2 {kind_code!r} is not GS, NT or TR", frame)
    else:
        if line[2:3] != b",":
            raise MalformedFrame("A&D line must be HH,number unit", frame)
        header, kind, number, unit_code = line[:2], None, line[3:12], line[12:15]
    unit = UNITS.get(unit_code.strip(b" "))
    if header == b"OL":
        under = number[:1] == b"-"
        return Reading(NAME, frame, None, unit, kind=kind, overload=not under,
                       underload=under)
    if header not in STABLE:
        raise MalformedFrame(f"A&D header {header!r} is not ST, US or OL", frame)
    if not _NUMBER.fullmatch(number.strip(b" ")):
        raise MalformedFrame(f"A&D weight {number!r} is not a number", frame)
    if unit is None:
        raise UnsupportedUnit(f"A&D unit {unit_code!r} is not kg, g, t, lb or mg", frame)
    value = Decimal(number.strip(b" ").decode("ascii"))
    return Reading(NAME, frame, value, unit, stable=STABLE[header], kind=kind,
                   **({kind.value: value} if kind else {}))


def encode(value: Decimal | None, unit: str, *, stable: bool = True, kind: str = "GS",
           decimals: int = 2) -> bytes:
    """An indicator line for simulators and tests; `value` None sends the overload line."""
    code = {"kg": b"kg", "g": b" g", "t": b" t", "lb": b"lb"}[unit]
    if value is None:
        number = b"+" + b" " * (6 - decimals) + b"." + b" " * decimals
        return b"OL," + kind.encode() + b"," + number + code + b"\r\n"
    text = f"{abs(value):07.{decimals}f}"
    if len(text) != 7:
        raise ValueError(f"{value} does not fit 8 characters with {decimals} decimals")
    number = ("-" if value < 0 else "+") + text
    header = b"ST" if stable else b"US"
    return header + b"," + kind.encode() + b"," + number.encode("ascii") + code + b"\r\n"

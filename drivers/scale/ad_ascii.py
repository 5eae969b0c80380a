"""A&D-style ASCII output, as A&D indicators and many Asian indicators send it.

    ST,GS,+0012.34kg CR LF      (18 bytes)

Header 1: ST stable, US unstable, OL overload, LO underload (below the indicator's lower
limit; the digits are blanks as for OL). Header 2: GS gross, NT net, TR tare (the value
shown is the tare). Then eight characters of signed number with its decimal point, and a
2-character unit: `kg`, ` g`, ` t`, `lb`. On overload the digits become blanks and the point
stays: `OL,GS,+    .  kg`.

Some A&D balances use a shorter layout without header 2 and with a 9-character number and a
3-character unit, `ST,+00081.72  g` (17 bytes); it is accepted too. `OL` with a '-' sign is
taken as underload, as `LO` is. Lines end with CR LF, or with CR alone where the indicator's
terminator is set so: both are accepted, on the same line too.
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
    """The frame is the last 16 characters before the terminator (two headers) or the last
    15 (one header)."""
    body = len(line) - _terminator_len(line)
    for length, commas in ((INDICATOR_LEN, (2, 5)), (BALANCE_LEN, (2,))):
        start = body - (length - 2)
        if start >= 0 and all(line[start + i] == ord(",") for i in commas):
            return start
    return -1


def _terminator_len(frame: bytes) -> int:
    return 2 if frame.endswith(b"\r\n") else 1 if frame.endswith(b"\r") else 0


def framer() -> LineFramer:
    """Lines ending CR LF or CR alone (the LF after a CR is taken with it when it comes)."""
    return LineFramer(_find_start, terminator=b"\r", optional_lf=True, max_len=64)


def parse(frame: bytes) -> Reading:
    """One line (with its CR LF or CR) as a Reading. Raises MalformedFrame or
    UnsupportedUnit."""
    end = _terminator_len(frame)
    line = frame[:-end] if end else frame
    if not end or len(line) + 2 not in (INDICATOR_LEN, BALANCE_LEN):
        raise MalformedFrame("not an A&D line (16 or 15 characters and CR LF or CR)", frame)
    if len(line) + 2 == INDICATOR_LEN:
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
    if header in (b"OL", b"LO"):
        under = header == b"LO" or number[:1] == b"-"
        return Reading(NAME, frame, None, unit, kind=kind, overload=not under,
                       underload=under)
    if header not in STABLE:
        raise MalformedFrame(f"A&D header {header!r} is not ST, US, OL or LO", frame)
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

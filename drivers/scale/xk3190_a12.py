"""Yaohua XK3190-A12(E): continuous output, 15-byte frames.

    'W' 'G'|'N'  seven bytes of weight with its '.'  'k' 'g'  XH XL  CR LF

'G' marks gross, 'N' net. The XOR covers bytes 1-11 counted from 1 ('W' through 'g'), sent as
two ASCII nibbles as on the XK3190-A9. A negative weight has '-' in byte 3; without a decimal
point byte 9 is a blank. Overload (gross above Max + 9e) is nine blanks then "OL", under -20 d
nine blanks then "LO", each with its check and CR LF. The layout, the worked example
`57 47 30 30 34 2E 31 33 39 6B 67 33 44 0D 0A` (4.139 kg gross) and the overload frame with
check "23" come from the A12(E) manual; DOMAIN.md gives the layout only. The frame has no
stable flag (stability must be inferred); only the unit "kg" is documented.
"""

from __future__ import annotations

import re
from decimal import Decimal

from .checks import nibbles, parse_nibbles, xor
from .errors import ChecksumError, MalformedFrame
from .framing import LineFramer, fixed_suffix
from .reading import Reading, Unit, WeightKind

NAME = "xk3190-a12"
FRAME_LEN = 15
_BLANKS = b" " * 9
_NUMBER = re.compile(rb"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_KINDS = {b"G": WeightKind.GROSS, b"N": WeightKind.NET}


def framer() -> LineFramer:
    """CR LF lines; the frame is the last 15 bytes, starting with 'W' or nine blanks."""
    return LineFramer(fixed_suffix(FRAME_LEN, lambda f: f[:1] == b"W" or f[:9] == _BLANKS),
                      max_len=64)


def parse(frame: bytes) -> Reading:
    """One 15-byte frame as a Reading. Raises ChecksumError or MalformedFrame."""
    if len(frame) != FRAME_LEN or not frame.endswith(b"\r\n"):
        raise MalformedFrame("not an XK3190-A12 frame (15 bytes ending CR LF)", frame)
    body, check = frame[:11], frame[11:13]
    sent = parse_nibbles(check)
    if sent is None:
        raise MalformedFrame(f"XK3190-A12 check characters {check!r} are not hex digits", frame)
    if sent != xor(body):
        raise ChecksumError(f"XK3190-A12 check is {check.decode()} but the XOR of bytes 1-11 "
                            f"is {nibbles(xor(body)).decode()}", frame)
    if body[:9] == _BLANKS:
        if body[9:] == b"OL":
            return Reading(NAME, frame, None, None, overload=True)
        if body[9:] == b"LO":
            return Reading(NAME, frame, None, None, underload=True)
        raise MalformedFrame(f"XK3190-A12 status {body[9:]!r} is neither OL nor LO", frame)
    kind = _KINDS.get(body[1:2])
    if body[:1] != b"W" or kind is None:
        raise MalformedFrame("XK3190-A12 frame must start with WG or WN", frame)
    if body[9:11] != b"kg":
        raise MalformedFrame(f"XK3190-A12 unit {body[9:11]!r} is not kg", frame)
    number = body[2:9].strip(b" ")
    if not _NUMBER.fullmatch(number):
        raise MalformedFrame(f"XK3190-A12 weight {body[2:9]!r} is not a number", frame)
    weight = Decimal(number.decode("ascii"))
    return Reading(NAME, frame, weight, Unit.KG, kind=kind, **{kind.value: weight})


def encode(weight: Decimal | None, decimals: int, *, net: bool = False,
           condition: str = "") -> bytes:
    """A frame for simulators and tests; `condition` "OL" or "LO" sends that status frame."""
    if condition:
        body = _BLANKS + condition.encode("ascii")
    else:
        width = 7 if decimals else 6  # without a point, byte 9 is a blank
        sign = "-" if weight < 0 else ""
        text = sign + f"{abs(weight):.{decimals}f}".rjust(width - len(sign), "0")
        if len(text) > width:
            raise ValueError(f"{weight} does not fit the 7-byte weight field")
        body = b"W" + (b"N" if net else b"G") + text.ljust(7).encode("ascii") + b"kg"
    return body + nibbles(xor(body)) + b"\r\n"

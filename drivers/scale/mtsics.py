"""MT-SICS (Mettler Toledo Standard Interface Command Set; Ohaus and others speak it too).

Lines of ASCII ending CR LF, both ways. An answer is `ID Status Weight Unit` for weight
commands, or `ID Status ...` otherwise:

    S S     100.00 g     stable weight (answer to S, SI, or each line of SIR)
    S D     100.02 g     dynamic (unstable) weight, from SI or SIR; never from S
    S I                  command understood but not executable now (S gives up waiting)
    S + / S -            overload / underload
    Z A, Z I, Z +, Z -   zero done / not executable / above / below the zero range
    ES, ET, EL           syntax, transmission, logical error (answer to any command)
    I4 A "B123456789"    serial number; sent unasked after power-up, and as the answer to @
    TA A       2.000 kg  the tare the balance holds (0 when none); T tares and answers
                         `T S` with the new tare, TAC clears it (`TAC A`)

The weight of `S`, `SI` and `SIR` is the *net* weight: the balance has taken off the tare it
holds. It is read as a net weight with an unknown tare; `with_tare` joins it with the `TA`
answer asked just before it into one reading of gross, tare and net (with no tare held, the
weight shown is the gross).

The weight is a 10-character right-aligned field after one blank, then one blank and a unit of
1-5 characters; padding is accepted loosely, since balances differ. By default a balance speaks
only when asked (it can be set to start SIR by itself). Default 9600 8N1 with Xon/Xoff.
"""

from __future__ import annotations

import re
from decimal import Decimal

from .command import Command
from .errors import CommandUnsupported, MalformedFrame, UnsupportedUnit
from .framing import LineFramer
from .reading import Reading, Reply, Unit, WeightKind

NAME = "mt-sics"
ERRORS = ("ES", "ET", "EL")
UNITS = {"mg": Unit.MG, "g": Unit.G, "kg": Unit.KG, "t": Unit.T, "lb": Unit.LB}
# Answer IDs that carry a weight, what kind of weight, and the statuses that come with one.
WEIGHT_IDS: dict[str, WeightKind] = {"S": WeightKind.NET, "T": WeightKind.TARE,
                                     "TI": WeightKind.TARE, "TA": WeightKind.TARE}
WEIGHT_STATUSES = {"S": ("S", "D"), "T": ("S", "D"), "TI": ("S", "D"), "TA": ("A",)}
# Commands whose answers carry another ID.
ANSWER_ID = {"SI": "S", "SIR": "S", "SIU": "S", "SIRU": "S", "SU": "S", "@": "I4"}

_LINE = re.compile(r"(?P<id>[A-Z@][A-Z0-9]*)(?: (?P<status>\S+))?(?: +(?P<rest>.*))?")
_WEIGHT = re.compile(r"(?P<value>[+-]?(?:\d+(?:\.\d*)?|\.\d+)) +(?P<unit>\S{1,5})")
_FIELD = re.compile(r'"([^"]*)"|(\S+)')


def _find_start(line: bytes) -> int:
    match = re.search(rb"[A-Z@]", line)
    return match.start() if match else -1


def framer() -> LineFramer:
    """CR LF lines; bytes before the first capital letter of a line are garbage."""
    return LineFramer(_find_start, max_len=128)


def parse(frame: bytes) -> Reading | Reply:
    """One answer line (with its CR LF) as a Reading (weights, S +/-) or a Reply (the rest).

    Raises MalformedFrame or UnsupportedUnit.
    """
    if not frame.endswith(b"\r\n"):
        raise MalformedFrame("MT-SICS line must end with CR LF", frame)
    body = frame[:-2]
    if any(b < 0x20 for b in body):
        raise MalformedFrame("MT-SICS line holds control characters", frame)
    text = body.decode("latin-1").rstrip(" ")
    match = _LINE.fullmatch(text)
    if not match:
        raise MalformedFrame(f"not an MT-SICS answer: {text!r}", frame)
    ident, status, rest = match["id"], match["status"] or "", match["rest"] or ""
    if ident in WEIGHT_IDS and status in WEIGHT_STATUSES[ident]:
        weight = _WEIGHT.fullmatch(rest.strip())
        if not weight:
            raise MalformedFrame(f"MT-SICS weight answer without a weight and unit: {text!r}",
                                 frame)
        unit = UNITS.get(weight["unit"])
        if unit is None:
            raise UnsupportedUnit(f"MT-SICS unit {weight['unit']!r} is not a mass unit this "
                                  "driver converts (mg, g, kg, t, lb)", frame)
        value = Decimal(weight["value"])
        kind = WEIGHT_IDS[ident]
        return Reading(NAME, frame, value, unit, stable=status in ("S", "A"), kind=kind,
                       **{kind.value: value})
    if ident in WEIGHT_IDS and status in ("+", "-") and not rest:
        return Reading(NAME, frame, None, None, overload=status == "+",
                       underload=status == "-")
    fields = tuple(m[1] if m[1] is not None else m[2] for m in _FIELD.finditer(rest))
    return Reply(NAME, frame, ident, status, fields)


def with_tare(tare: Reading | None, weight: Reading) -> Reading:
    """A weight answer (`SI`) completed with the `TA` answer asked just before it: one reading
    whose raw bytes are both answers, tare first, so that the sale's frames digest covers the
    tare it was recorded with. No tare held (TA answers 0): the weight is the gross. `tare`
    None (the balance has no TA command): a net weight whose tare is unknown.

    Raises ValueError when the answers are not a tare and a weight in one unit.
    """
    if weight.kind is not WeightKind.NET and weight.weight is not None:
        raise ValueError("with_tare needs a weight answer (S, SI)")
    if tare is None:
        return weight
    if tare.kind is not WeightKind.TARE or tare.weight is None:
        raise ValueError("with_tare needs a tare answer (TA)")
    raw = tare.raw + weight.raw
    if weight.weight is None:                         # S + / S -: no weight to join
        return Reading(NAME, raw, None, None, overload=weight.overload,
                       underload=weight.underload)
    if tare.unit != weight.unit:
        raise ValueError(f"the balance answered TA in {tare.unit.value} and SI in "
                         f"{weight.unit.value}")
    if tare.weight == 0:
        return Reading(NAME, raw, weight.weight, weight.unit, stable=weight.stable,
                       kind=WeightKind.GROSS, gross=weight.weight, tare=tare.weight,
                       net=weight.weight)
    return Reading(NAME, raw, weight.weight, weight.unit, stable=weight.stable,
                   kind=WeightKind.NET, net=weight.weight, tare=tare.weight,
                   gross=weight.weight + tare.weight)


def command(text: str) -> Command:
    """A command line (CR LF added) and the test for its answer: the answer's ID, or one of
    the error answers ES, ET, EL."""
    if not text or any(c in text for c in "\r\n") or not text.isascii():
        raise CommandUnsupported(f"MT-SICS command {text!r} must be one line of ASCII")
    word = text.split(" ", 1)[0]
    want = ANSWER_ID.get(word, word).encode("ascii")

    def answers(frame: bytes) -> bool:
        line = frame[:-2] if frame.endswith(b"\r\n") else frame
        return line.split(b" ", 1)[0] in (want, *(e.encode() for e in ERRORS))

    return Command(f"{NAME} {text}", text.encode("ascii") + b"\r\n", answers)


def encode_weight(value: Decimal, unit: str, *, stable: bool, ident: str = "S") -> bytes:
    """A weight answer for simulators and tests: `S S     100.00 g`, `TA A      2.00 kg`."""
    status = "A" if ident == "TA" else "S" if stable else "D"
    return f"{ident} {status} {value:>10} {unit}\r\n".encode("ascii")


def encode_reply(ident: str, status: str = "", *fields: str) -> bytes:
    """Any other answer: `Z A`, `S I`, `ES`, `I4 A "serial"` (fields are quoted)."""
    parts = [ident, status, *(f'"{f}"' for f in fields)]
    return (" ".join(p for p in parts if p) + "\r\n").encode("ascii")

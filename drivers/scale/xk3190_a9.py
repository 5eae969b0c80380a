"""Yaohua XK3190-A9: continuous output (12-byte frames) and command mode.

Continuous frame, 8N1 ASCII:
    STX(02) sign('+'/'-') six digits, most significant first, decimals('0'-'4') XH XL ETX(03)
The check is the XOR of bytes 2-9 counted from 1 (sign, six digits, decimals byte), sent as two
ASCII nibbles (`checks.nibbles`). The digits are the display without its decimal point; the
decimals byte says how many of them follow the point (`+001234` with '2' is 12.34).

This reading is checked against both published frames (see tests/test_scale_xk3190_a9.py):
`02 2B 30 30 30 30 30 30 30 31 42 03` has six '0' digits *and* a '0' decimals byte, i.e. eight
bytes 2B 30 30 30 30 30 30 30 whose XOR is 2B ^ 30 (seven 30s cancel to one) = 1B, sent "1B";
`02 2B 30 30 31 35 36 30 30 31 39 03` is digits 001560, decimals '0' (1560), XOR 19, sent "19".
Reading the frame as seven digits, or the check as covering STX or ETX, fails one of them.

The frame has no unit, stable, overload or gross/net flag: the unit is configured (default
kg) and stability must be inferred (`StabilityDetector`).

Command mode (the indicator answers only when asked): `STX address command XH XL ETX`, address
'A'-'Z' (communication address 1 is 'A'), command A handshake, B gross, C tare, D net; the check
is the XOR of address and command. DOMAIN.md gives the command layout only. The answers follow
the A9+, A23P and DS3 manuals of the same family (found with `search`; not confirmed for the
A9 itself): `STX address command data XH XL ETX` with the XOR over address..data; A answers
with no data (6 bytes); B, C, D with sign, six digits and decimals exactly as in the continuous
frame (14 bytes). Those manuals list the host command for address 1, gross, as
`02 41 42 30 33 03`, which this module reproduces.
"""

from __future__ import annotations

from decimal import Decimal

from .checks import nibbles, parse_nibbles, xor
from .command import Command
from .errors import ChecksumError, CommandUnsupported, MalformedFrame
from .framing import ETX, STX, StxEtxFramer
from .reading import Reading, Reply, Unit, WeightKind

NAME = "xk3190-a9"
CONTINUOUS_LEN, HANDSHAKE_LEN, ANSWER_LEN = 12, 6, 14

COMMANDS = {"A": "handshake", "B": "gross", "C": "tare", "D": "net"}
_KINDS = {"B": WeightKind.GROSS, "C": WeightKind.TARE, "D": WeightKind.NET}


def framer() -> StxEtxFramer:
    """Splits continuous frames, handshake answers and weight answers."""
    return StxEtxFramer((CONTINUOUS_LEN, HANDSHAKE_LEN, ANSWER_LEN))


def parse(frame: bytes, *, unit: Unit = Unit.KG) -> Reading | Reply:
    """A continuous frame or a command-mode answer as a Reading (or the handshake as a Reply).

    Raises ChecksumError or MalformedFrame.
    """
    if len(frame) not in (CONTINUOUS_LEN, HANDSHAKE_LEN, ANSWER_LEN) \
            or frame[0] != STX or frame[-1] != ETX:
        raise MalformedFrame("not an XK3190-A9 frame (STX, 4, 9 or 11 bytes, ETX)", frame)
    body, check = frame[1:-3], frame[-3:-1]
    sent = parse_nibbles(check)
    if sent is None:
        raise MalformedFrame(f"XK3190-A9 check characters {check!r} are not hex digits", frame)
    if sent != xor(body):
        raise ChecksumError(f"XK3190-A9 check is {check.decode()} but the XOR of the frame is "
                            f"{nibbles(xor(body)).decode()}", frame)
    if len(frame) == CONTINUOUS_LEN:
        weight = _weight(body, frame)
        return Reading(NAME, frame, weight, unit)
    address, command = chr(body[0]), chr(body[1])
    if not ("A" <= address <= "Z"):
        raise MalformedFrame(f"XK3190-A9 address {address!r} is not A-Z", frame)
    if len(frame) == HANDSHAKE_LEN:
        return Reply(NAME, frame, command, "", (address,))
    kind = _KINDS.get(command)
    if kind is None:
        raise MalformedFrame(f"XK3190-A9 answer to command {command!r} is not a weight "
                             "(only B gross, C tare, D net are supported)", frame)
    weight = _weight(body[2:], frame)
    return Reading(NAME, frame, weight, unit, kind=kind,
                   **{kind.value: weight})


def net_with_tare(tare: Reading, net: Reading) -> Reading:
    """A net answer (D) completed with the tare answer (C) asked just before it: one reading
    of net, tare and gross = net + tare. Its raw bytes are both answers, tare first, so the
    sale's frames digest covers the tare it was recorded with.

    Raises ValueError unless `tare` and `net` are a tare and a net answer in the same unit.
    """
    if tare.kind is not WeightKind.TARE or net.kind is not WeightKind.NET:
        raise ValueError("net_with_tare needs a tare (C) and a net (D) answer")
    if tare.unit != net.unit or tare.weight is None or net.weight is None:
        raise ValueError("the tare and net answers must both carry a weight in one unit")
    return Reading(NAME, tare.raw + net.raw, net.weight, net.unit, kind=WeightKind.NET,
                   gross=net.weight + tare.weight, net=net.weight, tare=tare.weight)


def _weight(field: bytes, frame: bytes) -> Decimal:
    """Sign, six digits and the decimals byte as a Decimal."""
    sign, digits, decimals = field[:1], field[1:7], field[7:8]
    if sign not in (b"+", b"-"):
        raise MalformedFrame(f"XK3190-A9 sign byte {sign!r} is not '+' or '-'", frame)
    if not digits.isdigit():
        raise MalformedFrame(f"XK3190-A9 weight digits {digits!r} are not six digits", frame)
    if decimals not in (b"0", b"1", b"2", b"3", b"4"):
        raise MalformedFrame(f"XK3190-A9 decimals byte {decimals!r} is not '0'-'4'", frame)
    value = Decimal(int(digits)).scaleb(-int(decimals))
    return -value if sign == b"-" and value else value


def encode(weight: Decimal, decimals: int) -> bytes:
    """A continuous frame showing `weight` with `decimals` places (for simulators and tests)."""
    return bytes([STX]) + _field(weight, decimals) + _tail(_field(weight, decimals))


def encode_answer(address: str, command: str, weight: Decimal | None, decimals: int) -> bytes:
    """A command-mode answer: the handshake (command A, no weight) or a weight (B, C, D)."""
    body = (address + command).encode("ascii")
    if weight is not None:
        body += _field(weight, decimals)
    return bytes([STX]) + body + _tail(body)


def command(name: str, address: str = "A") -> Command:
    """The host's command frame: `name` is A/B/C/D or handshake/gross/tare/net."""
    letter = {v: k for k, v in COMMANDS.items()}.get(name, name.upper())
    if letter not in COMMANDS:
        raise CommandUnsupported(f"XK3190-A9 has no command {name!r}; use one of "
                                 + ", ".join(f"{k} ({v})" for k, v in COMMANDS.items()))
    if len(address) != 1 or not ("A" <= address <= "Z"):
        raise CommandUnsupported(f"XK3190-A9 address {address!r} must be one letter A-Z")
    body = (address + letter).encode("ascii")
    return Command(f"{NAME} {COMMANDS[letter]}", bytes([STX]) + body + _tail(body),
                   lambda frame: len(frame) in (HANDSHAKE_LEN, ANSWER_LEN)
                   and frame[1:3] == body)


def _field(weight: Decimal, decimals: int) -> bytes:
    if not 0 <= decimals <= 4:
        raise ValueError("XK3190-A9 shows 0-4 decimals")
    scaled = int(abs(weight).scaleb(decimals))
    if scaled != abs(weight).scaleb(decimals) or scaled > 999999:
        raise ValueError(f"{weight} does not fit six digits with {decimals} decimals")
    return f"{'-' if weight < 0 else '+'}{scaled:06d}{decimals}".encode("ascii")


def _tail(body: bytes) -> bytes:
    return nibbles(xor(body)) + bytes([ETX])

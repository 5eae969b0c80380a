"""Toledo continuous output (Mettler Toledo and the many indicators that copy it).

    STX SWA SWB SWC  six digits of displayed weight  six digits of tare  CR  [checksum]

about seven frames a second. No decimal point or sign is sent: SWA bits 0-2 give the decimal
position, SWB the sign and the flags, SWC the unit. The optional checksum is the two's
complement of the low seven bits of the sum of all bytes before it, STX and CR included.

Status bits differ between vendors, so they are data: `ToledoBits`, one per model. The
`standard` map follows the Mettler Toledo IND manuals' status-word tables (the Fairbanks
manuals agree where they overlap):

    SWA bits 0-2  decimal position: 0 = XXXX00, 1 = XXXXX0, 2 = XXXXXX, 3 = XXXXX.X ...
                  7 = X.XXXXX. Codes 0 and 1 show dummy zeros: the six digits sent are the
                  display's, zeros included, so the digits are taken as they are (the
                  decimal point is not moved to the right).
    SWB bit 0     net (1) or gross (0)        bit 1  negative
    SWB bit 2     out of range                bit 3  motion
    SWB bit 4     kg (1) or lb (0), where SWC says "kg or lb"
    SWB bit 6     power up: the indicator has not been zeroed since it was switched on
    SWC bits 0-2  unit: 0 = kg or lb (SWB bit 4), 1 = g, 2 = t, 3 = oz, 4 = troy oz,
                  5 = pennyweight, 6 = (short/long) ton, 7 = custom; indicators without
                  the field send 0 there

A unit this driver does not weigh in (ounces, troy ounces, pennyweights, tons, custom) is
refused with `UnsupportedUnit`, never read as another. Bit 7 of every status byte may carry
parity (7E1 indicators) and is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from .checks import toledo_checksum
from .errors import ChecksumError, MalformedFrame, UnsupportedUnit
from .framing import CR, STX, Framed, Framer
from .reading import Reading, Unit, WeightKind

NAME = "toledo"
BODY_LEN = 17  # STX .. CR


@dataclass(frozen=True)
class Bit:
    """One flag: status word 'a', 'b' or 'c' and the bit number (0 = least significant)."""

    word: str
    bit: int

    def test(self, words: dict[str, int]) -> bool:
        return bool(words[self.word] >> self.bit & 1)


KG_OR_LB = "kg or lb"
# SWC bits 0-2 -> the unit, or the name of a unit this driver refuses (IND manuals' table).
STANDARD_UNITS: dict[int, Unit | str] = {
    0: KG_OR_LB, 1: Unit.G, 2: Unit.T, 3: "ounces", 4: "troy ounces", 5: "pennyweights",
    6: "tons", 7: "custom units"}


@dataclass(frozen=True)
class ToledoBits:
    """Where a model keeps its flags; None means the model has no such flag.

    `decimal_exponents[code]` is the power of ten applied to the digits for SWA bits 0-2 =
    code (None: the code is invalid for this model). `units[code]` is the unit for SWC bits
    0-2 = code: `KG_OR_LB` lets the `kg` bit choose, a string names a unit that is refused.
    """

    net: Bit | None = Bit("b", 0)
    negative: Bit | None = Bit("b", 1)
    out_of_range: Bit | None = Bit("b", 2)
    motion: Bit | None = Bit("b", 3)
    kg: Bit | None = Bit("b", 4)
    power_up: Bit | None = Bit("b", 6)
    units: dict[int, Unit | str] = field(default_factory=lambda: dict(STANDARD_UNITS))
    decimal_exponents: tuple[int | None, ...] = field(default=(0, 0, 0, -1, -2, -3, -4, -5))


MODELS = {
    "standard": ToledoBits(),
    # Mettler Toledo Wildcat: the same status-word table. Its unit field is the three bits
    # of SWC (1 = grams, 3 = ounces), not bit 0 alone, which would take ounces for grams.
    "wildcat": ToledoBits(),
}


class ToledoFramer(Framer):
    """STX, 15 bytes, CR at a fixed place, and the checksum byte when it is configured.

    Status bytes may be 0x02 on some models, so an STX only starts a frame when the CR is
    where it must be; otherwise the STX is garbage and the search goes on after it.
    """

    def __init__(self, checksum: bool = True):
        super().__init__()
        self.length = BODY_LEN + (1 if checksum else 0)

    def _split(self, out: list[Framed]) -> None:
        buf = self._buf
        while buf:
            start = buf.find(STX)
            if start < 0:
                self._junk(out, bytes(buf))
                buf.clear()
                return
            self._junk(out, bytes(buf[:start]))
            del buf[:start]
            if len(buf) < self.length:
                return
            if buf[BODY_LEN - 1] != CR:
                self._junk(out, bytes(buf[:1]))
                del buf[:1]
                continue
            out.append(bytes(buf[:self.length]))
            del buf[:self.length]


def framer(checksum: bool = True) -> ToledoFramer:
    return ToledoFramer(checksum)


def parse(frame: bytes, *, bits: ToledoBits = MODELS["standard"],
          checksum: bool = True) -> Reading:
    """One frame as a Reading. Raises ChecksumError or MalformedFrame."""
    expected_len = BODY_LEN + (1 if checksum else 0)
    if len(frame) != expected_len or frame[0] != STX or frame[BODY_LEN - 1] != CR:
        raise MalformedFrame(f"not a Toledo frame (STX, 15 bytes, CR"
                             f"{', checksum' if checksum else ''})", frame)
    if checksum:
        want = toledo_checksum(frame[:BODY_LEN])
        if frame[BODY_LEN] & 0x7F != want:
            raise ChecksumError(f"Toledo checksum is {frame[BODY_LEN]:#04x}, expected "
                                f"{want:#04x} (does the indicator send one? see the "
                                "protocol's checksum option)", frame)
    words = dict(zip("abc", (b & 0x7F for b in frame[1:4]), strict=True))
    flag = {name: (getattr(bits, name) is not None and getattr(bits, name).test(words))
            for name in ("net", "negative", "out_of_range", "motion", "kg", "power_up")}
    code = words["a"] & 0x07
    exponent = bits.decimal_exponents[code] if code < len(bits.decimal_exponents) else None
    if exponent is None:
        raise MalformedFrame(f"Toledo decimal code {code} is not valid for this model", frame)
    unit = bits.units.get(words["c"] & 0x07, "an unknown unit")
    if unit == KG_OR_LB:
        unit = Unit.KG if flag["kg"] else Unit.LB
    if not isinstance(unit, Unit):
        raise UnsupportedUnit(f"the Toledo indicator weighs in {unit} (status word C "
                              f"{words['c'] & 0x07}); set it to kg, g or t", frame)
    weight, tare = _digits(frame[4:10], exponent), _digits(frame[10:16], exponent)
    if weight is None or tare is None:
        if flag["out_of_range"]:
            return Reading(NAME, frame, None, None, out_of_range=True,
                           unzeroed=flag["power_up"])
        raise MalformedFrame("Toledo weight and tare must be six digits", frame)
    if flag["negative"] and weight:
        weight = -weight
    if flag["net"]:
        kind, net, gross = WeightKind.NET, weight, weight + tare
    else:
        kind, gross, net = WeightKind.GROSS, weight, weight - tare
    return Reading(NAME, frame, weight, unit, stable=not flag["motion"], kind=kind,
                   gross=gross, net=net, tare=tare, out_of_range=flag["out_of_range"],
                   unzeroed=flag["power_up"])


def _digits(field: bytes, exponent: int) -> Decimal | None:
    """Six digits (leading zeros may be blanks) scaled by 10**exponent."""
    text = field.replace(b" ", b"0")
    if len(text) != 6 or not text.isdigit():
        return None
    return Decimal(int(text)).scaleb(exponent)


UNIT_CODES = {Unit.G: 1, Unit.T: 2}


def encode(weight: Decimal, decimals: int, *, tare: Decimal = Decimal(0), unit: Unit = Unit.KG,
           net: bool = False, motion: bool = False, out_of_range: bool = False,
           power_up: bool = False, checksum: bool = True,
           bits: ToledoBits = MODELS["standard"], unit_code: int | None = None) -> bytes:
    """A frame for simulators and tests (`decimals` 0-5 places; `standard`-like models).
    `unit_code` overrides SWC bits 0-2 (to send a unit this driver refuses)."""
    code = 2 + decimals
    if not 0 <= decimals <= 5 or bits.decimal_exponents[code] != -decimals:
        raise ValueError(f"{decimals} decimals is not a decimal code of this model")
    words = {"a": 0x20 | 0x08 | code, "b": 0x20, "c": 0x20}
    words["c"] |= UNIT_CODES.get(unit, 0) if unit_code is None else unit_code
    flags = {"net": net, "negative": weight < 0, "out_of_range": out_of_range,
             "motion": motion, "kg": unit is Unit.KG, "power_up": power_up}
    for name, on in flags.items():
        where = getattr(bits, name)
        if on and where is not None:
            words[where.word] |= 1 << where.bit
    digits = [int(abs(v).scaleb(decimals)) for v in (weight, tare)]
    if any(d > 999999 for d in digits):
        raise ValueError(f"{weight} or {tare} does not fit six digits")
    body = (bytes([STX, words["a"], words["b"], words["c"]])
            + b"".join(f"{d:06d}".encode("ascii") for d in digits) + bytes([CR]))
    return body + (bytes([toledo_checksum(body)]) if checksum else b"")

"""A&D-style ASCII lines, byte by byte from DOMAIN.md."""

from decimal import Decimal

import pytest

from drivers.scale import Decoder, MalformedFrame, UnsupportedUnit, ad_ascii, get_protocol
from drivers.scale.reading import Reading, Unit, WeightKind

# S T , G S , + 0 0 1 2 . 3 4 k g CR LF: 18 bytes.
STABLE = bytes.fromhex("53 54 2C 47 53 2C 2B 30 30 31 32 2E 33 34 6B 67 0D 0A")
# O L , G S , + blank*4 . blank*2 k g CR LF: the digits become blanks, the point stays.
OVERLOAD = bytes.fromhex("4F 4C 2C 47 53 2C 2B 20 20 20 20 2E 20 20 6B 67 0D 0A")


def test_stable_gross():
    assert STABLE == b"ST,GS,+0012.34kg\r\n" and len(STABLE) == 18
    assert ad_ascii.parse(STABLE) == Reading(
        "ad-ascii", STABLE, Decimal("12.34"), Unit.KG, stable=True, kind=WeightKind.GROSS,
        gross=Decimal("12.34"))


@pytest.mark.parametrize("line, weight, unit, stable, kind", [
    (b"US,GS,+0012.30kg\r\n", "12.30", Unit.KG, False, WeightKind.GROSS),
    (b"ST,NT,+0010.00kg\r\n", "10.00", Unit.KG, True, WeightKind.NET),
    (b"ST,TR,+0002.50kg\r\n", "2.50", Unit.KG, True, WeightKind.TARE),
    (b"ST,GS,+00512.4 g\r\n", "512.4", Unit.G, True, WeightKind.GROSS),
    (b"ST,GS,+001.250 t\r\n", "1.250", Unit.T, True, WeightKind.GROSS),
    (b"ST,GS,+0027.10lb\r\n", "27.10", Unit.LB, True, WeightKind.GROSS),
    (b"ST,GS,-0000.40kg\r\n", "-0.40", Unit.KG, True, WeightKind.GROSS),
])
def test_headers_and_units(line, weight, unit, stable, kind):
    r = ad_ascii.parse(line)
    assert (r.weight, r.unit, r.stable, r.kind) == (Decimal(weight), unit, stable, kind)


def test_overload_line():
    r = ad_ascii.parse(OVERLOAD)
    assert r.overload and r.weight is None and r.stable is None
    assert ad_ascii.encode(None, "kg") == OVERLOAD


def test_balance_layout_with_one_header():
    r = ad_ascii.parse(b"ST,+00081.72  g\r\n")
    assert (r.weight, r.unit, r.stable, r.kind) == (Decimal("81.72"), Unit.G, True, None)


@pytest.mark.parametrize("line, error", [
    (b"XX,GS,+0012.34kg\r\n", MalformedFrame),
    (b"ST,ZZ,+0012.34kg\r\n", MalformedFrame),
    (b"ST,GS,+00x2.34kg\r\n", MalformedFrame),
    (b"ST,GS,+0012.34oz\r\n", UnsupportedUnit),
])
def test_rejected_lines(line, error):
    with pytest.raises(error):
        ad_ascii.parse(line)


def test_encoder_matches_hand_written_frame():
    assert ad_ascii.encode(Decimal("12.34"), "kg") == STABLE


def test_noise_partial_lines_and_unit_change():
    d = Decoder(get_protocol("ad-ascii"))
    stream = (b"\xfe\xfe" + STABLE + STABLE[7:] + b"ST,GS,+00512.4 g\r\n" + OVERLOAD
              + b"\x00" * 300 + STABLE)
    kinds = [type(e).__name__ for e in d.feed(stream)]
    assert kinds == ["GarbageError", "Reading", "GarbageError", "UnitChanged", "UnitChanged",
                     "GarbageError", "Reading"]


def test_lo_header_is_an_underload():
    # L O , G S , + blanks . blanks k g CR LF: below the indicator's lower limit.
    line = bytes.fromhex("4C 4F 2C 47 53 2C 2B 20 20 20 20 2E 20 20 6B 67 0D 0A")
    r = ad_ascii.parse(line)
    assert (r.weight, r.underload, r.overload) == (None, True, False)
    assert r.condition() == "underload"
    assert [type(e).__name__ for e in Decoder(get_protocol("ad-ascii")).feed(line)] \
        == ["Reading"]


def test_cr_only_lines():
    """An indicator set to end its lines with CR alone: every line is a reading, with no
    garbage, however the stream is cut; the last line waits for the next byte to tell
    whether an LF follows."""
    cr_only = STABLE[:-1] + b"US,GS,+0012.36kg\r" + STABLE[:-1]
    events = Decoder(get_protocol("ad-ascii")).feed(cr_only + b"S")
    assert [(type(e).__name__, e.weight, e.stable) for e in events] == [
        ("Reading", Decimal("12.34"), True), ("Reading", Decimal("12.36"), False),
        ("Reading", Decimal("12.34"), True)]
    assert ad_ascii.parse(STABLE[:-1]).weight == Decimal("12.34")
    d, out = Decoder(get_protocol("ad-ascii")), []
    for byte in cr_only + STABLE:
        out += d.feed(bytes([byte]))
    assert [e.raw for e in out] == [STABLE[:-1], b"US,GS,+0012.36kg\r", STABLE[:-1], STABLE]

"""XK3190-A12(E) frames, byte by byte from the A12(E) manual and DOMAIN.md."""

from decimal import Decimal

import pytest

from drivers.scale import ChecksumError, Decoder, GarbageError, MalformedFrame, get_protocol
from drivers.scale import xk3190_a12 as a12
from drivers.scale.reading import Reading, Unit, WeightKind

# The manual's example, 4.139 kg gross: W G 0 0 4 . 1 3 9 k g '3' 'D' CR LF.
# XOR of bytes 1-11: 57^47^30^30^34^2E^31^33^39^6B^67 = 3D.
EXAMPLE = bytes.fromhex("57 47 30 30 34 2E 31 33 39 6B 67 33 44 0D 0A")
# Overload: nine blanks, 'O' 'L', check '2' '3' (20 ^ 4F ^ 4C = 23), CR LF (manual).
OVERLOAD = bytes.fromhex("20 20 20 20 20 20 20 20 20 4F 4C 32 33 0D 0A")
# Under -20 d: nine blanks, 'L' 'O', the same check.
UNDERLOAD = bytes.fromhex("20 20 20 20 20 20 20 20 20 4C 4F 32 33 0D 0A")


def test_manual_example():
    r = a12.parse(EXAMPLE)
    assert r == Reading("xk3190-a12", EXAMPLE, Decimal("4.139"), Unit.KG,
                        kind=WeightKind.GROSS, gross=Decimal("4.139"))
    assert r.stable is None


def test_net_frame():
    # 'N' instead of 'G': 3D ^ 47 ^ 4E = 34.
    frame = bytes.fromhex("57 4E 30 30 34 2E 31 33 39 6B 67 33 34 0D 0A")
    r = a12.parse(frame)
    assert (r.kind, r.net, r.gross) == (WeightKind.NET, Decimal("4.139"), None)


def test_negative_frame():
    # '-' in byte 3: W G - 0 4 . 1 3 9 k g, XOR 20.
    frame = b"WG-04.139kg20\r\n"
    assert a12.parse(frame).weight == Decimal("-4.139")


def test_no_decimal_point_leaves_byte_9_blank():
    frame = b"WG001234 kg38\r\n"
    assert a12.parse(frame).weight == Decimal(1234)


def test_overload_and_underload():
    over, under = a12.parse(OVERLOAD), a12.parse(UNDERLOAD)
    assert over.overload and over.weight is None and not over.underload
    assert under.underload and under.weight is None


def test_encoder_matches_manual():
    assert a12.encode(Decimal("4.139"), 3) == EXAMPLE
    assert a12.encode(None, 0, condition="OL") == OVERLOAD


def test_checksum_error():
    with pytest.raises(ChecksumError, match="check is 3E but the XOR of bytes 1-11 is 3D"):
        a12.parse(EXAMPLE[:11] + b"3E\r\n")


@pytest.mark.parametrize("frame, message", [
    (b"WX004.139kg2B\r\n", "WG or WN"),
    (b"WG004.139lb" + b"36\r\n", "unit"),
    (b"WG0x4.139kg75\r\n", "not a number"),
    (b"         OX27\r\n", "neither OL nor LO"),
])
def test_malformed(frame, message):
    from drivers.scale.checks import nibbles, xor
    frame = frame[:11] + nibbles(xor(frame[:11])) + b"\r\n"  # valid check, bad content
    with pytest.raises(MalformedFrame, match=message):
        a12.parse(frame)


def test_noise_before_a_frame_on_the_same_line_is_garbage():
    d = Decoder(get_protocol("xk3190-a12"))
    events = d.feed(b"\x00\xfe#" + EXAMPLE + b"G004.1" + b"\r\n" + OVERLOAD)
    assert [type(e).__name__ for e in events] == ["GarbageError", "Reading", "GarbageError",
                                                  "Reading"]
    assert events[0].raw == b"\x00\xfe#"
    assert events[3].overload


def test_partial_frame_then_full_frame_byte_by_byte():
    d = Decoder(get_protocol("xk3190-a12"))
    out = []
    for b in EXAMPLE[6:] + EXAMPLE:
        out += d.feed(bytes([b]))
    assert isinstance(out[0], GarbageError) and out[1].weight == Decimal("4.139")

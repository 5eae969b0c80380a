"""XK3190-A9 continuous and command-mode frames, against frames written out byte by byte from
DOMAIN.md and the Yaohua manuals, never only against our own encoder."""

from decimal import Decimal

import pytest

from drivers.scale import ChecksumError, Decoder, GarbageError, MalformedFrame, get_protocol
from drivers.scale import xk3190_a9 as a9
from drivers.scale.reading import Reading, Reply, Unit, WeightKind

# The two frames published for the A9 (DOMAIN.md), byte by byte.
# Byte:    1  2  3  4  5  6  7  8  9 10 11 12
#         STX +  d1 d2 d3 d4 d5 d6 dp XH XL ETX
ZERO = bytes.fromhex("02 2B 30 30 30 30 30 30 30 31 42 03")
W1560 = bytes.fromhex("02 2B 30 30 31 35 36 30 30 31 39 03")
# Careful with ZERO: after the sign come six '0' digits AND a '0' decimals byte: bytes 2-9 are
# 2B followed by seven 30s. The XOR of seven 30s is 30, so the check is 2B ^ 30 = 1B, sent as
# '1' (31) 'B' (42). Counting only six bytes of 30 (forgetting the decimals byte) gives 2B,
# and taking the '0' of byte 9 as a seventh digit leaves no decimals byte: both readings fail
# the published check, so the layout (6 digits + decimals, XOR over bytes 2-9) is confirmed.
# W1560: 2B^30^30^31^35^36^30^30 = 19, sent '1' '9'; digits 001560, decimals '0' -> 1560.


def test_published_zero_frame():
    r = a9.parse(ZERO)
    assert r == Reading("xk3190-a9", ZERO, Decimal(0), Unit.KG)
    assert r.stable is None and r.kind is None  # no flags in this protocol


def test_published_1560_frame():
    r = a9.parse(W1560)
    assert r.weight == Decimal(1560) and r.unit is Unit.KG and r.stable is None


def test_decimals_byte_places_the_point():
    # +001234 with decimals '2' is 12.34; check 2B^30^30^31^32^33^34^32 = 1D -> '1' 'D'.
    frame = bytes.fromhex("02 2B 30 30 31 32 33 34 32 31 44 03")
    assert a9.parse(frame).weight == Decimal("12.34")


def test_negative_weight():
    # -000100 with decimals '1' is -10.0; check 2D^30^30^30^31^30^30^31 = 1D.
    frame = bytes.fromhex("02 2D 30 30 30 31 30 30 31 31 44 03")
    assert a9.parse(frame).weight == Decimal("-10.0")


def test_unit_is_configuration_not_frame():
    assert get_protocol("xk3190-a9?unit=g").parse(W1560).unit is Unit.G


def test_encoder_reproduces_published_frames():
    assert a9.encode(Decimal(0), 0) == ZERO
    assert a9.encode(Decimal(1560), 0) == W1560


def test_bad_check_is_a_checksum_error():
    bad = W1560[:9] + b"18" + W1560[11:]
    with pytest.raises(ChecksumError, match="check is 18 but the XOR of the frame is 19"):
        a9.parse(bad)


def test_changed_digit_is_caught_by_the_check():
    bad = W1560[:5] + b"6" + W1560[6:]  # 001660
    with pytest.raises(ChecksumError):
        a9.parse(bad)


@pytest.mark.parametrize("frame, message", [
    (bytes.fromhex("02 2A 30 30 30 30 30 30 30 31 41 03"), "sign byte"),   # '*' sign
    (bytes.fromhex("02 2B 30 30 30 30 30 30 35 31 45 03"), "decimals byte"),  # '5' decimals
    (bytes.fromhex("02 2B 30 30 30 30 30 41 30 36 41 03"), "six digits"),  # 'A' digit
    (bytes.fromhex("02 2B 30 30 30 30 30 30 30 31 62 03"), "not hex"),      # 'b' lower case
])
def test_malformed_frames(frame, message):
    with pytest.raises(MalformedFrame, match=message):
        a9.parse(frame)


# -- command mode: host frames as listed in the A9+/A23P manuals for address 1 ('A') ---------

@pytest.mark.parametrize("name, frame", [
    ("handshake", "02 41 41 30 30 03"),
    ("gross", "02 41 42 30 33 03"),
    ("tare", "02 41 43 30 32 03"),
    ("net", "02 41 44 30 35 03"),
])
def test_command_frames_match_the_manual(name, frame):
    assert a9.command(name).data == bytes.fromhex(frame)


def test_command_for_another_address():
    # Address 2 is 'B': XOR 42 ^ 41 = 03.
    assert a9.command("A", address="B").data == bytes.fromhex("02 42 41 30 33 03")


def test_unknown_command_is_refused():
    from drivers.scale import CommandUnsupported
    with pytest.raises(CommandUnsupported, match="no command"):
        a9.command("E")


def test_gross_answer():
    # 02 'A' 'B' + 0 0 1 5 6 0 '0' XH XL 03; XOR over bytes 2..11:
    # 41^42^2B^30^30^31^35^36^30^30 = 1A -> '1' 'A'.
    frame = bytes.fromhex("02 41 42 2B 30 30 31 35 36 30 30 31 41 03")
    r = a9.parse(frame)
    assert (r.weight, r.kind, r.gross) == (Decimal(1560), WeightKind.GROSS, Decimal(1560))
    assert a9.command("gross").answers(frame)
    assert not a9.command("net").answers(frame)


def test_tare_and_net_answers():
    tare = bytes.fromhex("02 41 43 2B 30 30 30 35 30 30 32") + b"1E\x03"  # 5.00
    net = bytes.fromhex("02 41 44 2B 30 30 31 30 30 30 31") + b"1E\x03"   # 100.0
    assert a9.parse(tare).tare == Decimal("5.00")
    assert a9.parse(tare).kind is WeightKind.TARE
    assert a9.parse(net).net == Decimal("100.0")


def test_handshake_answer_is_a_reply():
    frame = bytes.fromhex("02 41 41 30 30 03")
    assert a9.parse(frame) == Reply("xk3190-a9", frame, "A", "", ("A",))


# -- framing ------------------------------------------------------------------------------

def decode(data, chunks=1):
    d = Decoder(get_protocol("xk3190-a9"))
    out = []
    step = max(1, len(data) // chunks)
    for i in range(0, len(data), step):
        out += d.feed(data[i:i + step])
    return out


def test_stream_split_byte_by_byte():
    events = decode(ZERO + W1560 + ZERO, chunks=36)
    assert [e.weight for e in events] == [0, 1560, 0]


def test_garbage_and_partial_frames_resynchronise():
    stream = b"\xff\x00noise" + W1560[5:] + ZERO + W1560[:7] + W1560 + b"\x03"
    events = decode(stream)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["GarbageError", "Reading", "GarbageError", "Reading", "GarbageError"]
    assert [e.weight for e in events if isinstance(e, Reading)] == [0, 1560]
    assert all(e.raw for e in events if isinstance(e, GarbageError))


def test_overlong_frame_is_garbage():
    events = decode(b"\x02+0000000000000000000\x03" + W1560)
    assert isinstance(events[0], GarbageError) and events[1].weight == 1560

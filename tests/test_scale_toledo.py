"""Toledo continuous output: frames written out byte by byte from DOMAIN.md and the Mettler
Toledo / Fairbanks manuals' status tables."""

from decimal import Decimal

import pytest

from drivers.scale import (
    ChecksumError,
    Decoder,
    MalformedFrame,
    UnsupportedUnit,
    get_protocol,
    toledo,
)
from drivers.scale.reading import Unit, WeightKind
from drivers.scale.toledo import Bit, ToledoBits

# STX, SWA 2C (bit 5 always 1, bit 3 increment x1, bits 0-2 = 4: XXXX.XX),
# SWB 30 (bit 5 always 1, bit 4 kg; gross, positive, in range, no motion), SWC 20,
# weight 001234, tare 000000, CR, checksum.
# Sum 02+2C+30+20 + 30+30+31+32+33+34 + 6*30 + 0D = 2D5; low 7 bits 55; -55 & 7F = 2B.
GROSS = bytes.fromhex("02 2C 30 20 30 30 31 32 33 34 30 30 30 30 30 30 0D 2B")
# SWB 31: net. Weight 001000 (10.00 kg net), tare 000250 (2.50 kg). Sum 2D4 -> checksum 2C.
NET = bytes.fromhex("02 2C 31 20 30 30 31 30 30 30 30 30 30 32 35 30 0D 2C")
# SWB 38: motion. Otherwise as GROSS. Sum 2DD -> checksum 23.
MOTION = bytes.fromhex("02 2C 38 20 30 30 31 32 33 34 30 30 30 30 30 30 0D 23")


def with_sum(body: bytes) -> bytes:
    return body + bytes([-sum(body) & 0x7F])


def test_gross_frame():
    r = toledo.parse(GROSS)
    assert (r.weight, r.unit, r.stable, r.kind) == (Decimal("12.34"), Unit.KG, True,
                                                    WeightKind.GROSS)
    assert (r.gross, r.tare, r.net) == (Decimal("12.34"), Decimal("0.00"), Decimal("12.34"))
    assert not r.out_of_range


def test_net_frame_gives_gross_from_net_plus_tare():
    r = toledo.parse(NET)
    assert (r.kind, r.net, r.tare, r.gross) == (WeightKind.NET, Decimal("10.00"),
                                                Decimal("2.50"), Decimal("12.50"))


def test_motion_bit_means_unstable():
    assert toledo.parse(MOTION).stable is False


def test_negative_out_of_range_and_pounds():
    negative = with_sum(bytes.fromhex("02 2C 32 20") + b"000500" + b"000000" + b"\r")
    assert toledo.parse(negative).weight == Decimal("-5.00")
    oor = with_sum(bytes.fromhex("02 2C 34 20") + b"999999" + b"000000" + b"\r")
    assert toledo.parse(oor).out_of_range
    pounds = with_sum(bytes.fromhex("02 2C 20 20") + b"001234" + b"000000" + b"\r")
    assert toledo.parse(pounds).unit is Unit.LB


@pytest.mark.parametrize("code, digits, weight", [
    (0, b"001200", Decimal(1200)),      # XXXX00: the dummy zeros are among the six digits
    (1, b"001230", Decimal(1230)),      # XXXXX0
    (2, b"001234", Decimal(1234)),      # XXXXXX
    (3, b"001234", Decimal("123.4")),   # XXXXX.X
    (5, b"001234", Decimal("1.234")),   # XXX.XXX
])
def test_decimal_codes(code, digits, weight):
    frame = with_sum(bytes([0x02, 0x28 | code, 0x30, 0x20]) + digits + b"000000\r")
    assert toledo.parse(frame).weight == weight


def test_leading_blanks_and_parity_bits_are_accepted():
    frame = with_sum(bytes([0x02, 0x2C | 0x80, 0x30, 0x20 | 0x80]) + b"  1234" + b"     0\r")
    assert toledo.parse(frame).weight == Decimal("12.34")


def test_checksum_error_names_the_option():
    with pytest.raises(ChecksumError, match="checksum option"):
        toledo.parse(GROSS[:-1] + b"\x2A")


def test_frames_without_checksum():
    p = get_protocol("toledo?checksum=0")
    events = Decoder(p).feed(GROSS[:-1] + MOTION[:-1])
    assert [e.stable for e in events] == [True, False]


def test_bit_map_is_configurable_per_model():
    # A vendor with motion in SWB bit 6 and no kg bit (its unit is pounds) and net in SWC 1.
    odd = ToledoBits(net=Bit("c", 1), motion=Bit("b", 6), kg=None, power_up=None,
                     units=dict.fromkeys(range(8), toledo.KG_OR_LB))
    frame = with_sum(bytes.fromhex("02 2C 60 22") + b"001234" + b"000100" + b"\r")
    r = toledo.parse(frame, bits=odd)
    assert (r.stable, r.unit, r.kind, r.gross) == (False, Unit.LB, WeightKind.NET,
                                                   Decimal("13.34"))
    # The standard map reads the same bytes differently: that is why models are data.
    standard = toledo.parse(frame)
    assert (standard.stable, standard.unit, standard.unzeroed) == (True, Unit.T, True)


@pytest.mark.parametrize("model", ["standard", "wildcat"])
@pytest.mark.parametrize("swb, swc, unit", [
    (0x30, 0x20, Unit.KG),      # SWC unit code 0: kg, as SWB bit 4 says
    (0x20, 0x20, Unit.LB),      # code 0 and SWB bit 4 clear: lb
    (0x20, 0x21, Unit.G),       # code 1: grams, whatever SWB bit 4 says
    (0x30, 0x22, Unit.T),       # code 2: metric tonnes
])
def test_units_from_status_word_c(model, swb, swc, unit):
    frame = with_sum(bytes([0x02, 0x2C, swb, swc]) + b"001234" + b"000000" + b"\r")
    assert get_protocol(f"toledo?model={model}").parse(frame).unit is unit


@pytest.mark.parametrize("model", ["standard", "wildcat"])
@pytest.mark.parametrize("swc, name", [(0x23, "ounces"), (0x24, "troy ounces"),
                                       (0x25, "pennyweights"), (0x26, "tons"),
                                       (0x27, "custom units")])
def test_units_this_driver_does_not_weigh_in_are_refused(model, swc, name):
    # Ounces (code 3) have bit 0 set: a test of bit 0 alone took them for grams.
    frame = with_sum(bytes([0x02, 0x2C, 0x20, swc]) + b"001234" + b"000000" + b"\r")
    with pytest.raises(UnsupportedUnit, match=name):
        get_protocol(f"toledo?model={model}").parse(frame)


def test_power_up_bit_says_not_zeroed_since_switched_on():
    frame = with_sum(bytes([0x02, 0x2C, 0x70, 0x20]) + b"001234" + b"000000" + b"\r")
    assert toledo.parse(frame).unzeroed
    assert not toledo.parse(GROSS).unzeroed
    assert toledo.parse(toledo.encode(Decimal("1.00"), 2, power_up=True)).unzeroed


def test_unit_change_is_reported():
    d = Decoder(get_protocol("toledo"))
    pounds = with_sum(bytes.fromhex("02 2C 20 20") + b"001234" + b"000000" + b"\r")
    events = d.feed(GROSS + pounds + pounds)
    assert [type(e).__name__ for e in events] == ["Reading", "UnitChanged", "Reading"]
    assert "unit changed from kg to lb" in str(events[1])
    assert events[1].reading.unit is Unit.LB


def test_malformed_digits():
    frame = with_sum(bytes.fromhex("02 2C 30 20") + b"00x234" + b"000000" + b"\r")
    with pytest.raises(MalformedFrame, match="six digits"):
        toledo.parse(frame)


def test_resync_after_garbage_and_a_false_stx():
    d = Decoder(get_protocol("toledo"))
    stream = b"\x13\x02junk" + GROSS[:9] + GROSS + b"\x02\x02" + MOTION
    events = d.feed(stream)
    readings = [e for e in events if not isinstance(e, Exception)]
    assert [r.stable for r in readings] == [True, False]
    assert all(type(e).__name__ == "GarbageError" for e in events if isinstance(e, Exception))


def test_status_byte_equal_to_stx_is_not_a_frame_start():
    # A model with bit 5 of SWB always 0 sends 02 for "negative gross lb": still one frame.
    frame = with_sum(bytes.fromhex("02 2C 02 20") + b"000500" + b"000000" + b"\r")
    events = Decoder(get_protocol("toledo")).feed(frame + frame)
    assert [e.weight for e in events] == [Decimal("-5.00")] * 2


def test_encoder_matches_hand_written_frames():
    assert toledo.encode(Decimal("12.34"), 2) == GROSS
    assert toledo.encode(Decimal("10.00"), 2, tare=Decimal("2.50"), net=True) == NET

"""From indicator frames to the weight a sale may use (stability, tare, refusals)."""

from decimal import Decimal

import pytest

from agent.station import purchase as p
from agent.station.weighing import ScaleJudge
from drivers.scale import SalePolicy, StabilityDetector, get_protocol, mtsics, xk3190_a9

POLICY = SalePolicy(division_g=Decimal("20"), min_divisions=20, capacity_g=Decimal("150000"))


def judge(tare_g=0, policy=POLICY):
    return ScaleJudge("scale-1", policy, tare_g=tare_g,
                      detector=StabilityDetector(count=3, window_s=1.0))


def a9(weight: str, decimals: int = 2):
    return xk3190_a9.parse(xk3190_a9.encode(Decimal(weight), decimals))


def test_three_equal_frames_make_a_stable_sale_weight_with_tare():
    j = judge(tare_g=600)
    results = [j.feed(a9("52.94"), t) for t in (0.0, 0.1, 0.2)]
    assert [r.sale_ok for r in results] == [False, False, True]
    w = results[-1]
    assert (w.gross_g, w.tare_g, w.net_g) == (52_940, 600, 52_340)
    assert w.stable and len(w.frames_digest) == 64
    assert "unstable" in results[0].reason or "stable" in results[0].reason


def test_a_changing_load_is_not_stable():
    j = judge()
    results = [j.feed(a9(w), t) for t, w in ((0, "10.00"), (0.1, "10.02"), (0.2, "10.00"))]
    assert not any(r.sale_ok for r in results)


def test_below_minimum_and_over_capacity_are_refused():
    j = judge()
    for t in (0, 0.1, 0.2):
        small = j.feed(a9("0.38"), t)  # 380 g < 20 e = 400 g
    assert not small.sale_ok and "minimum" in small.reason
    j = judge()
    for t in (0, 0.1, 0.2):
        big = j.feed(a9("151.00"), t)
    assert not big.sale_ok and big.reason


def test_tare_heavier_than_the_load_is_refused():
    j = judge(tare_g=5_000)
    for t in (0, 0.1, 0.2):
        w = j.feed(a9("4.00"), t)
    assert not w.sale_ok and "net weight -1000 g after a tare of 5000 g" in w.reason


def test_weights_that_are_not_whole_grams_are_refused_not_rounded():
    j = judge()
    for t in (0, 0.1, 0.2):
        w = j.feed(a9("12.3455", 4), t)
    assert not w.sale_ok and "whole" in w.reason and w.net_g is None


# -- gross, tare and net as each protocol states them, in the recorded sale ------------------
#
# Golden frames, written out byte by byte from the formats (never made by our encoders). With
# a configured tare of 500 g (the basket), a gross reading loses the basket; a net reading is
# the net already: it is completed with the indicator's own tare where the protocol reports
# one, and refused where it does not (its tare is unknown, so no gross can be stated, and the
# basket must not be taken off twice).

CLERK = p.Staff("s-01", "Clerk Li", "clerk")
FARMER = p.Farmer("04a1b2c3", "cpu", "F-0001", "Zhang San", "acct-tok-1", 7)
PRICED = p.Priced("+1", Decimal("38.50"), Decimal("385.00"), {"table": "2026-spring:3"})


# The manuals' examples weigh to the gram (4.139 kg): e = 1 g.
GRAM_POLICY = SalePolicy(division_g=Decimal(1), min_divisions=20, capacity_g=Decimal(150000))


def settled(protocol: str, frames: list[bytes], tare_g: int = 500):
    """Each frame parsed with `protocol` and fed three times (stability is inferred where
    the protocol has no flag); the last Weighing."""
    parse = get_protocol(protocol).parse
    j = judge(tare_g=tare_g, policy=GRAM_POLICY)
    t = 0.0
    for frame in frames:
        reading = parse(frame)
        for _ in range(3):
            w = j.feed(reading, t)
            t += 0.1
    return w


def sold(weighing) -> dict:
    """The `scale` part of the purchase.recorded body a sale on `weighing` records."""
    flow = p.PurchaseFlow("station-01")
    flow.handle(p.StaffCard(CLERK), 0)
    flow.handle(p.FarmerCard(FARMER), 0)
    flow.handle(p.ScaleUpdate(weighing), 0)
    assert flow.phase is p.Phase.GRADING, weighing
    flow.handle(p.Graded(PRICED), 0)
    (record,) = flow.handle(p.Confirm(), 0)
    return record.body["scale"]


def grams(scale: dict) -> tuple[str, str, str]:
    return scale["gross_g"], scale["tare_g"], scale["net_g"]


@pytest.mark.parametrize("protocol, frame, expected", [
    # A&D: ST stable, GS gross, +0010.50 kg
    ("ad-ascii", b"ST,GS,+0010.50kg\r\n", ("10500", "500", "10000")),
    # XK3190-A12: the manual's worked example, WG 4.139 kg, check "3D"
    ("xk3190-a12", bytes.fromhex("57 47 30 30 34 2E 31 33 39 6B 67 33 44 0D 0A"),
     ("4139", "500", "3639")),
    # XK3190-A9 continuous, the published frame +001560 decimals 0, check "19" (unit g)
    ("xk3190-a9?unit=g", bytes.fromhex("02 2B 30 30 31 35 36 30 30 31 39 03"),
     ("1560", "500", "1060")),
    # Toledo gross: SWA 2C (two decimals), SWB 30 (kg, gross), 001050, tare 000000, CR, sum 2F
    ("toledo", bytes.fromhex("02 2C 30 20 30 30 31 30 35 30 30 30 30 30 30 30 0D 2F"),
     ("10500", "500", "10000")),
])
def test_a_gross_reading_loses_the_configured_tare(protocol, frame, expected):
    w = settled(protocol, [frame])
    assert w.sale_ok, w.reason
    assert grams(sold(w)) == expected


def test_a_net_reading_with_the_indicators_tare_is_recorded_as_the_indicator_stated_it():
    # Toledo net: SWB 31 (kg, net), weight 001000 = 10.00 kg, tare 000050 = 0.50 kg, sum 2E.
    # The configured 500 g basket is not taken off again: the indicator's tare has it.
    frame = bytes.fromhex("02 2C 31 20 30 30 31 30 30 30 30 30 30 30 35 30 0D 2E")
    w = settled("toledo", [frame], tare_g=500)
    assert w.sale_ok, w.reason
    assert grams(sold(w)) == ("10500", "500", "10000")
    w = settled("toledo", [frame], tare_g=0)
    assert grams(sold(w)) == ("10500", "500", "10000")


def test_an_a9_net_answer_joined_with_its_tare_answer_states_the_gross():
    # Command mode, address A: C (tare) +000050 decimals 2, check "1E"; D (net) +001000
    # decimals 2, check "1D".
    tare = xk3190_a9.parse(bytes.fromhex("02 41 43 2B 30 30 30 30 35 30 32 31 45 03"))
    net = xk3190_a9.parse(bytes.fromhex("02 41 44 2B 30 30 31 30 30 30 32 31 44 03"))
    reading = xk3190_a9.net_with_tare(tare, net)
    assert (reading.gross, reading.tare, reading.net) == (Decimal("10.50"), Decimal("0.50"),
                                                          Decimal("10.00"))
    assert reading.raw == tare.raw + net.raw        # both answers go into the frames digest
    j = judge(tare_g=500)
    for t in (0.0, 0.1, 0.2):
        w = j.feed(reading, t)
    assert w.sale_ok, w.reason
    assert grams(sold(w)) == ("10500", "500", "10000")


@pytest.mark.parametrize("protocol, frame, net_g", [
    # A&D: ST stable, NT net, +0010.00 kg: the audit's frame, once sold as gross 10000 g
    ("ad-ascii", b"ST,NT,+0010.00kg\r\n", 10_000),
    # XK3190-A12: WN 4.139 kg ('N' instead of 'G': the check 3D becomes 34)
    ("xk3190-a12", bytes.fromhex("57 4E 30 30 34 2E 31 33 39 6B 67 33 34 0D 0A"), 4_139),
    # XK3190-A9 command mode: a D (net) answer with no tare answer, +001000 decimals 2
    ("xk3190-a9?mode=command", bytes.fromhex("02 41 44 2B 30 30 31 30 30 30 32 31 44 03"),
     10_000),
    # MT-SICS: S S 10.50 kg is the balance's *net* weight; without its TA answer the tare
    # it holds is unknown
    ("mt-sics", b"S S      10.50 kg\r\n", 10_500),
])
def test_a_net_reading_without_the_indicators_tare_is_not_sold(protocol, frame, net_g):
    w = settled(protocol, [frame], tare_g=500)
    assert not w.sale_ok
    assert "net weight without its tare" in w.reason
    assert (w.gross_g, w.tare_g, w.net_g) == (None, None, net_g)
    flow = p.PurchaseFlow("station-01")
    flow.handle(p.StaffCard(CLERK), 0)
    flow.handle(p.FarmerCard(FARMER), 0)
    flow.handle(p.ScaleUpdate(w), 0)
    assert flow.phase is p.Phase.WEIGHING          # no sale can start on it


def test_a_negative_indicator_tare_is_refused():
    tare = xk3190_a9.parse(xk3190_a9.encode_answer("A", "C", Decimal("-0.50"), 2))
    net = xk3190_a9.parse(xk3190_a9.encode_answer("A", "D", Decimal("10.00"), 2))
    j = judge()
    for t in (0.0, 0.1, 0.2):
        w = j.feed(xk3190_a9.net_with_tare(tare, net), t)
    assert not w.sale_ok and "tare is negative" in w.reason


def test_mtsics_net_with_a_tare_held_on_the_balance_is_not_tared_twice():
    """`S S 20.350 kg` with 2 kg held as tare on the balance and [scale] tare_g = 2000: the net
    is 20.350 kg (it was recorded as 18.350 kg, the basket taken off twice)."""
    tare = mtsics.parse(b"TA A      2.000 kg\r\n")
    net = mtsics.parse(b"S S     20.350 kg\r\n")
    j = judge(tare_g=2000, policy=GRAM_POLICY)
    for t in (0.0, 0.1, 0.2):
        w = j.feed(mtsics.with_tare(tare, net), t)
    assert w.sale_ok, w.reason
    assert grams(sold(w)) == ("22350", "2000", "20350")
    assert sold(w)["tare_source"] == "indicator"
    # No tare held (TA answers 0): the weight shown is the gross, the basket comes off.
    empty = mtsics.parse(b"TA A      0.000 kg\r\n")
    j = judge(tare_g=2000, policy=GRAM_POLICY)
    for t in (0.0, 0.1, 0.2):
        w = j.feed(mtsics.with_tare(empty, net), t)
    assert grams(sold(w)) == ("20350", "2000", "18350")
    assert sold(w)["tare_source"] == "configured"


def test_a9_continuous_refuses_to_sell_while_a_tare_is_held_on_the_indicator():
    """The A9's continuous frame cannot say that the clerk pressed TARE. When it shows a
    stable negative weight (the empty platform with a tare held), the station refuses to
    sell until the indicator shows a stable zero again, the tare cleared."""
    j = judge(tare_g=600)
    feed = iter(x / 10 for x in range(100))
    for _ in range(3):
        w = j.feed(a9("-0.60"), next(feed))       # basket taken off: minus the held tare
    assert not w.sale_ok
    for _ in range(3):
        w = j.feed(a9("12.00"), next(feed))       # cocoons on (the display is a net)
    assert not w.sale_ok and "a tare is held on the indicator" in w.reason
    for _ in range(3):
        w = j.feed(a9("0.00"), next(feed))        # tare cleared, empty platform
    for _ in range(3):
        w = j.feed(a9("12.60"), next(feed))
    assert w.sale_ok, w.reason
    assert (w.gross_g, w.tare_g, w.net_g) == (12_600, 600, 12_000)

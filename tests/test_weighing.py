"""From indicator frames to the weight a sale may use (stability, tare, refusals)."""

from decimal import Decimal

from agent.weighing import ScaleJudge
from drivers.scale import SalePolicy, StabilityDetector, xk3190_a9

POLICY = SalePolicy(division_g=Decimal("20"), min_divisions=20, capacity_g=Decimal("150000"))


def judge(tare_g=0):
    return ScaleJudge("scale-1", POLICY, tare_g=tare_g,
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
    assert not w.sale_ok and "net weight" in w.reason


def test_weights_that_are_not_whole_grams_are_refused_not_rounded():
    j = judge()
    for t in (0, 0.1, 0.2):
        w = j.feed(a9("12.3455", 4), t)
    assert not w.sale_ok and "whole" in w.reason and w.net_g is None

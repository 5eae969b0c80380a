"""Sale readiness: every refusal with its reason; and integer grams that never round."""

from decimal import Decimal

import pytest

from drivers.scale import (
    InexactWeight,
    NoWeight,
    Reading,
    Refusal,
    SalePolicy,
    Unit,
    WeightKind,
    check_sale,
)

POLICY = SalePolicy(division_g=Decimal(10))  # e = 10 g: minimum load 200 g


def reading(weight, unit=Unit.KG, stable=True, **kw) -> Reading:
    return Reading("test", b"raw", None if weight is None else Decimal(weight), unit,
                   stable=stable, **kw)


def test_a_stable_weight_above_the_minimum_is_ready():
    verdict = check_sale(reading("12.34"), POLICY)
    assert verdict.ok and verdict.codes == () and str(verdict) == "ready"


@pytest.mark.parametrize("r, code, words", [
    (reading(None, None, None, overload=True), Refusal.OVERLOAD, "overloaded"),
    (reading(None, None, None, underload=True), Refusal.UNDERLOAD, "below its range"),
    (reading("12.34", out_of_range=True), Refusal.OUT_OF_RANGE, "out of the"),
    (reading("-0.50"), Refusal.NEGATIVE, "negative weight -0.50 kg"),
    (reading("0.19"), Refusal.BELOW_MINIMUM, "below the minimum load 200 g (20 e)"),
    (reading("0.00"), Refusal.BELOW_MINIMUM, "minimum load"),
    (reading("12.34", stable=False), Refusal.UNSTABLE, "not stable"),
    (reading("2.50", kind=WeightKind.TARE), Refusal.TARE_SHOWN, "tare"),
    (reading(None, None), Refusal.NO_WEIGHT, "no weight"),
])
def test_refusals(r, code, words):
    verdict = check_sale(r, POLICY)
    assert not verdict.ok and code in verdict.codes
    assert words in str(verdict)


def test_minimum_is_inclusive():
    assert check_sale(reading("0.20"), POLICY).ok  # exactly 20 e


def test_minimum_divisions_are_configurable():
    policy = SalePolicy(division_g=Decimal("0.5"), min_divisions=50)  # 25 g
    assert check_sale(reading("24.0", Unit.G), policy).codes == (Refusal.BELOW_MINIMUM,)
    assert check_sale(reading("25.0", Unit.G), policy).ok


def test_no_flag_protocol_needs_the_inferred_verdict():
    r = reading("12.34", stable=None)
    assert check_sale(r, POLICY).codes == (Refusal.UNSTABLE,)
    assert "unknown" in str(check_sale(r, POLICY))
    assert check_sale(r, POLICY, stable=True).ok
    assert check_sale(r, POLICY, stable=False).codes == (Refusal.UNSTABLE,)


def test_indicator_saying_unstable_wins_over_inference():
    assert not check_sale(reading("12.34", stable=False), POLICY, stable=True).ok


def test_capacity_for_indicators_without_an_overload_flag():
    # OIML R76: nothing above Max + 9 e is used (e = 10 g: 150.090 kg).
    policy = SalePolicy(division_g=Decimal(10), capacity_g=Decimal(150000))
    assert check_sale(reading("150.09"), policy).ok
    verdict = check_sale(reading("150.10"), policy)
    assert verdict.codes == (Refusal.ABOVE_CAPACITY,) and "150000 g + 9 e" in str(verdict)


def test_several_reasons_at_once():
    verdict = check_sale(reading("-1.00", stable=False, out_of_range=True), POLICY)
    assert verdict.codes == (Refusal.OUT_OF_RANGE, Refusal.NEGATIVE, Refusal.UNSTABLE)


def test_policy_validation():
    with pytest.raises(ValueError):
        SalePolicy(division_g=Decimal(0))
    with pytest.raises(ValueError):
        SalePolicy(division_g=10.0)  # floats are refused: weights are never floats


# -- integer grams --------------------------------------------------------------------------

@pytest.mark.parametrize("weight, unit, grams", [
    ("12.34", Unit.KG, 12340), ("0.005", Unit.KG, 5), ("512", Unit.G, 512),
    ("512.0", Unit.G, 512), ("1.5", Unit.T, 1500000), ("-0.40", Unit.KG, -400),
    ("2000", Unit.MG, 2), ("1E+3", Unit.G, 1000),
])
def test_grams(weight, unit, grams):
    assert reading(weight, unit).grams() == grams


@pytest.mark.parametrize("weight, unit", [("512.5", Unit.G), ("1.0001", Unit.KG),
                                          ("1", Unit.LB), ("1", Unit.MG)])
def test_grams_refuse_to_round(weight, unit):
    with pytest.raises(InexactWeight, match="refusing to round"):
        reading(weight, unit).grams()


def test_grams_without_weight():
    with pytest.raises(NoWeight, match="overload"):
        reading(None, None, overload=True).grams()


def test_exact_grams_keep_fractions():
    assert reading("1", Unit.LB).weight_in_grams() == Decimal("453.59237")


# -- the net is what is sold: the minimum, the division and the tare ---------------------------


def test_the_minimum_load_is_a_minimum_of_the_net():
    """e = 50 g, a 2 kg basket: a gross of 2.050 kg is a net of 50 g, far below 20 e = 1 kg
    (it was sold, the minimum being checked on the gross)."""
    policy = SalePolicy(division_g=Decimal(50))
    verdict = check_sale(reading("2.050"), policy, tare_g=2000)
    assert verdict.codes == (Refusal.BELOW_MINIMUM,)
    assert "net 50 g is below the minimum load 1000 g (20 e)" in str(verdict)
    assert (verdict.weights.gross_g, verdict.weights.tare_g, verdict.weights.net_g) == (
        2050, 2000, 50)
    assert check_sale(reading("3.000"), policy, tare_g=2000).ok


def test_a_weight_that_is_not_a_multiple_of_e_is_refused():
    policy = SalePolicy(division_g=Decimal(50))
    verdict = check_sale(reading("12.340"), policy)
    assert verdict.codes == (Refusal.NOT_A_DIVISION,)
    assert "12340 g is not a whole number of divisions e = 50 g" in str(verdict)
    assert check_sale(reading("12.350"), policy).ok
    # A configured tare that is not a whole number of divisions would make every net wrong.
    assert check_sale(reading("12.350"), policy, tare_g=130).codes == (Refusal.NOT_A_DIVISION,)


def test_an_indicator_not_zeroed_since_power_up_is_refused():
    verdict = check_sale(reading("12.34", unzeroed=True), POLICY)
    assert verdict.codes == (Refusal.NOT_ZEROED,) and "press ZERO" in str(verdict)


def test_a_net_reading_uses_the_indicators_tare_never_the_configured_one():
    r = reading("20.350", kind=WeightKind.NET, net=Decimal("20.350"), tare=Decimal("2.000"))
    verdict = check_sale(r, POLICY, tare_g=2000)
    assert verdict.ok
    w = verdict.weights
    assert (w.gross_g, w.tare_g, w.net_g, w.tare_source.value) == (22350, 2000, 20350,
                                                                   "indicator")
    unknown = check_sale(reading("20.350", kind=WeightKind.NET), POLICY, tare_g=2000)
    assert unknown.codes == (Refusal.NET_WITHOUT_TARE,)
    assert "clear the tare on the indicator" in str(unknown)

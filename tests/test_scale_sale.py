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
    assert check_sale(reading("24.5", Unit.G), policy).codes == (Refusal.BELOW_MINIMUM,)
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
    policy = SalePolicy(division_g=Decimal(10), capacity_g=Decimal(150000))
    assert check_sale(reading("150.00"), policy).ok
    verdict = check_sale(reading("150.01"), policy)
    assert verdict.codes == (Refusal.ABOVE_CAPACITY,) and "150000 g" in str(verdict)


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

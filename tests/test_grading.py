"""Grading by dry shell weight and by shell ratio: every boundary, symmetric around the base."""

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.contract.pricing.errors import MeasurementError, PriceTableError, PurchaseRefused
from agent.contract.pricing.grading import DryShellRule, Grade, RatioBand, ShellRatioRule
from agent.errors import CocoonError

D = Decimal
STANDARD = DryShellRule(sample_g=D("50"), base_shell_g=D("9.2"), step_g=D("0.2"),
                        carry_g=D("0.1"))


@pytest.mark.parametrize("shell_g,step", [
    # at and above the base: whole 0.2 g steps, a remainder of 0.1 g or more is one more step
    ("9.2", 0), ("9.21", 0), ("9.29", 0), ("9.299", 0),
    ("9.3", 1), ("9.31", 1), ("9.39", 1), ("9.4", 1), ("9.49", 1),
    ("9.5", 2), ("9.59", 2), ("9.6", 2), ("9.69", 2), ("9.7", 3),
    ("10.2", 5), ("10.29", 5), ("10.3", 6),
    # below the base: the same rule on the shortfall (symmetric)
    ("9.19", 0), ("9.11", 0), ("9.101", 0),
    ("9.1", -1), ("9.09", -1), ("9.01", -1), ("9.0", -1), ("8.99", -1), ("8.91", -1),
    ("8.9", -2), ("8.81", -2), ("8.8", -2), ("8.71", -2), ("8.7", -3),
    ("8.2", -5), ("8.11", -5), ("8.1", -6),
])
def test_dry_shell_boundaries(shell_g, step):
    assert STANDARD.grade(D(shell_g)) == Grade(step)
    assert STANDARD.grade(shell_g) == Grade(step)  # a decimal string is as good as a Decimal


def test_trailing_zeros_do_not_matter():
    assert STANDARD.grade(D("9.30")) == STANDARD.grade(D("9.3000")) == Grade(1)


@pytest.mark.parametrize("step,label", [(0, "0"), (1, "+1"), (12, "+12"), (-1, "-1"),
                                        (-7, "-7")])
def test_labels(step, label):
    assert Grade(step).label == label


def test_other_constants_are_data():
    # A province grading in 0.25 g steps from 8.5 g, carrying from 0.15 g.
    rule = DryShellRule(D("50"), D("8.5"), D("0.25"), D("0.15"))
    assert rule.grade("8.64") == Grade(0)
    assert rule.grade("8.65") == Grade(1)
    assert rule.grade("8.35") == Grade(-1)
    assert rule.grade("8.36") == Grade(0)
    # carry_g equal to step_g: part steps are always dropped (truncation toward the base)
    trunc = DryShellRule(D("50"), D("9.2"), D("0.2"), D("0.2"))
    assert trunc.grade("9.39") == Grade(0) and trunc.grade("9.01") == Grade(0)
    assert trunc.grade("9.4") == Grade(1) and trunc.grade("9.0") == Grade(-1)


@pytest.mark.parametrize("value,words", [
    (None, "missing sample"),
    ("0", "impossible"),
    ("-9.2", "impossible"),
    ("50", "impossible"),
    ("51.2", "impossible"),
    (9.35, "float"),
    ("9,35", "plain decimal"),
    ("NaN", "plain decimal"),
    (D("Infinity"), "finite"),
])
def test_dry_shell_measurement_errors(value, words):
    with pytest.raises(MeasurementError, match=words) as info:
        STANDARD.grade(value)
    assert isinstance(info.value, CocoonError)


@pytest.mark.parametrize("kwargs,field", [
    ({"sample_g": D("0")}, "grading.sample_g"),
    ({"base_shell_g": D("50")}, "grading.base_shell_g"),
    ({"step_g": D("0")}, "grading.step_g"),
    ({"carry_g": D("0")}, "grading.carry_g"),
    ({"carry_g": D("0.3")}, "grading.carry_g"),
])
def test_dry_shell_rule_validation_names_the_field(kwargs, field):
    args = {"sample_g": D("50"), "base_shell_g": D("9.2"), "step_g": D("0.2"),
            "carry_g": D("0.1"), **kwargs}
    with pytest.raises(PriceTableError, match=field) as info:
        DryShellRule(**args)
    assert info.value.field == field


shells = st.decimals(min_value=D("0.01"), max_value=D("49.99"), places=2)


@given(shells, shells)
def test_grade_is_monotonic_in_shell_weight(a, b):
    low, high = sorted((a, b))
    assert STANDARD.grade(low).step <= STANDARD.grade(high).step


@given(st.decimals(min_value=D("0"), max_value=D("9.19"), places=3))
def test_grade_is_symmetric_around_the_base(distance):
    up = STANDARD.grade(D("9.2") + distance).step
    down = STANDARD.grade(D("9.2") - distance).step
    assert up == -down


@given(shells)
def test_grade_is_the_distance_in_steps_rounded_half_away_from_the_base(shell):
    # With carry = step / 2 the rule is ROUND_HALF_UP (ties away from zero) of distance/step.
    expected = ((shell - D("9.2")) / D("0.2")).quantize(D(1), rounding=ROUND_HALF_UP)
    assert STANDARD.grade(shell).step == int(expected)


# -- shell ratio -------------------------------------------------------------------------

BANDS = ShellRatioRule(D("21.0"), (
    RatioBand(D("19.0"), D("19.5"), D("-60.00")),
    RatioBand(D("19.5"), D("20.0"), D("-45.00")),
    RatioBand(D("20.0"), D("20.5"), D("-30.00")),
    RatioBand(D("20.5"), D("21.0"), D("-15.00")),
    RatioBand(D("21.0"), D("21.5"), D("0")),
    RatioBand(D("21.5"), D("22.0"), D("16.00")),
    RatioBand(D("22.0"), D("22.5"), D("34.00")),
    RatioBand(D("22.5"), D("23.0"), D("54.00")),
))


@pytest.mark.parametrize("ratio,step,diff", [
    ("21.0", 0, "0"), ("21.49", 0, "0"), ("21.5", 1, "16.00"), ("21.99", 1, "16.00"),
    ("22.0", 2, "34.00"), ("22.5", 3, "54.00"), ("22.99", 3, "54.00"),
    ("20.99", -1, "-15.00"), ("20.5", -1, "-15.00"), ("20.49", -2, "-30.00"),
    ("19.0", -4, "-60.00"),
])
def test_shell_ratio_bands(ratio, step, diff):
    grade, band = BANDS.grade(D(ratio))
    assert grade == Grade(step)
    assert band.diff == D(diff)


@pytest.mark.parametrize("ratio,error,words", [
    ("18.99", PurchaseRefused, "below the lowest band"),
    ("23.0", PurchaseRefused, "at or above the top"),
    (None, MeasurementError, "missing sample"),
    ("0", MeasurementError, "impossible"),
    ("100", MeasurementError, "impossible"),
    ("-1", MeasurementError, "impossible"),
])
def test_shell_ratio_refusals(ratio, error, words):
    with pytest.raises(error, match=words):
        BANDS.grade(ratio)


@pytest.mark.parametrize("bands,standard,field", [
    ((), "21.0", "grading.bands"),
    (((21, 22, 0), (22.5, 23, 1)), "21", r"grading.bands\[1\].from_pct"),
    (((21, 22, 0), (22, 23, -1)), "21", r"grading.bands\[1\].diff"),
    (((21, 21, 0),), "21", r"grading.bands\[0\].to_pct"),
    (((20, 21, -1), (21, 22, 0)), "20.7", "grading.standard_pct"),
    (((20, 21, -1), (21, 22, 1)), "20", r"grading.bands\[0\].diff"),
])
def test_shell_ratio_rule_validation_names_the_field(bands, standard, field):
    made = tuple(RatioBand(D(str(a)), D(str(b)), D(str(c))) for a, b, c in bands)
    with pytest.raises(PriceTableError, match=field):
        ShellRatioRule(D(standard), made)

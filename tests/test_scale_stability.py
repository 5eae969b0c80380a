"""StabilityDetector: N equal readings within a window where the indicator has no flag, the
flag where it has one; and the digest of the stable window."""

import hashlib
from decimal import Decimal

import pytest

from drivers.scale import Reading, StabilityDetector, Unit, WeightKind, frames_digest, xk3190_a9


def a9(weight: str) -> Reading:
    frame = xk3190_a9.encode(Decimal(weight), 2)
    return xk3190_a9.parse(frame)


def flagged(weight: str, stable: bool, unit=Unit.KG) -> Reading:
    return Reading("test", f"{weight}{stable}".encode(), Decimal(weight), unit, stable=stable,
                   kind=WeightKind.GROSS)


def feed(detector, readings, times):
    return [detector.feed(r, t) for r, t in zip(readings, times, strict=True)]


def test_n_equal_readings_within_the_window_are_stable():
    d = StabilityDetector(count=3, window_s=1.0)
    verdicts = feed(d, [a9("12.34")] * 4, [0.0, 0.1, 0.2, 0.3])
    assert [v.stable for v in verdicts] == [False, False, True, True]
    assert verdicts[2].source == "inferred"
    assert verdicts[3].frames == (a9("12.34").raw,) * 3


def test_equal_readings_spread_beyond_the_window_are_not_stable():
    d = StabilityDetector(count=3, window_s=1.0)
    verdicts = feed(d, [a9("12.34")] * 4, [0.0, 0.6, 1.2, 1.8])
    assert not any(v.stable for v in verdicts)
    # ...until the last three fit in the window again.
    assert d.feed(a9("12.34"), 2.0).stable


def test_a_different_value_restarts_the_count():
    d = StabilityDetector(count=3, window_s=1.0)
    seq = ["12.34", "12.34", "12.35", "12.34", "12.34", "12.34"]
    verdicts = feed(d, [a9(w) for w in seq], [i * 0.1 for i in range(6)])
    assert [v.stable for v in verdicts] == [False, False, False, False, False, True]


def test_overload_and_missing_weight_break_the_run():
    d = StabilityDetector(count=2, window_s=1.0)
    over = Reading("test", b"OL", None, None, overload=True)
    verdicts = feed(d, [a9("1.00"), over, a9("1.00"), a9("1.00")], [0, 0.1, 0.2, 0.3])
    assert [v.stable for v in verdicts] == [False, False, False, True]


def test_time_going_backwards_restarts():
    d = StabilityDetector(count=2, window_s=1.0)
    assert not feed(d, [a9("1.00"), a9("1.00")], [5.0, 4.0])[1].stable


def test_indicator_flag_decides_where_there_is_one():
    d = StabilityDetector(count=3, window_s=1.0)
    verdicts = feed(d, [flagged("5.00", True), flagged("5.00", False), flagged("5.00", True)],
                    [0.0, 0.1, 0.2])
    assert [(v.stable, v.source) for v in verdicts] == [
        (True, "indicator"), (False, "indicator"), (True, "indicator")]
    assert verdicts[2].frames == (flagged("5.00", True).raw,)  # the run restarted


def test_confirm_flag_also_needs_n_equal_readings():
    d = StabilityDetector(count=3, window_s=1.0, confirm_flag=True)
    verdicts = feed(d, [flagged("5.00", True)] * 3, [0.0, 0.1, 0.2])
    assert [v.stable for v in verdicts] == [False, False, True]


def test_unit_change_is_not_equal():
    d = StabilityDetector(count=2, window_s=1.0)
    verdicts = feed(d, [flagged("5", True, Unit.KG), flagged("5", True, Unit.LB)], [0, 0.1])
    assert verdicts[1].frames == (flagged("5", True, Unit.LB).raw,)


def test_reset():
    d = StabilityDetector(count=2, window_s=1.0)
    d.feed(a9("1.00"), 0.0)
    d.reset()
    assert not d.feed(a9("1.00"), 0.1).stable


def test_bad_configuration():
    with pytest.raises(ValueError):
        StabilityDetector(count=0)


def test_digest_is_sha256_over_length_prefixed_frames():
    frames = [b"\x02+001234211\x03", b"\x02+001234211\x03"]
    expected = hashlib.sha256(b"".join(len(f).to_bytes(4, "big") + f for f in frames))
    assert frames_digest(frames) == expected.hexdigest()
    # A fixed vector, so that the backend's implementation can be checked against it.
    assert frames_digest([b"ab", b"c"]) == hashlib.sha256(
        b"\x00\x00\x00\x02ab\x00\x00\x00\x01c").hexdigest()
    assert frames_digest([b"ab", b"c"]) != frames_digest([b"a", b"bc"])


def test_digest_of_a_stable_verdict_covers_its_window():
    d = StabilityDetector(count=3, window_s=1.0)
    verdict = feed(d, [a9("9.99")] + [a9("12.34")] * 3, [0, 0.1, 0.2, 0.3])[-1]
    assert verdict.digest == frames_digest([a9("12.34").raw] * 3)
    assert d.feed(a9("12.00"), 0.4).digest is None

"""SHT3x driver against a simulated chip, and the humidity band with hysteresis."""

import errno

import pytest

from agent.warehouse.climate import ClimateSettings, ClimateWatch
from drivers.climate import (
    ClimateError,
    SHT3x,
    SimulatedSht3x,
    convert,
    crc8,
    open_bus,
)


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def test_crc8_matches_the_datasheet_example():
    assert crc8(b"\xbe\xef") == 0x92  # Sensirion's worked example


def test_conversion_formulas_are_exact_at_the_ends():
    assert convert(0, 0).temp_c100 == -4500 and convert(0, 0).rh_c100 == 0
    top = convert(65535, 65535)
    assert top.temp_c100 == 13000 and top.rh_c100 == 10000
    assert str(convert(0x6666, 0xA666).rh_pct) == "65.00"


def test_the_driver_reads_what_the_chip_measures():
    clock = Clock()
    chip = SimulatedSht3x(temp_c="18.25", rh_pct="64.30", clock=clock)
    reading = SHT3x(chip, sleep=clock.sleep).read()
    assert abs(reading.temp_c100 - 1825) <= 1 and abs(reading.rh_c100 - 6430) <= 1


def test_reading_too_early_is_nacked_by_the_chip():
    clock = Clock()
    chip = SimulatedSht3x(clock=clock)
    chip.write(0x44, b"\x24\x00")
    with pytest.raises(OSError) as err:
        chip.read(0x44, 6)
    assert err.value.errno == errno.EREMOTEIO
    with pytest.raises(OSError):
        chip.write(0x44, b"\x12\x34")  # unknown command


def test_faults_are_clear_errors():
    clock = Clock()
    chip = SimulatedSht3x(clock=clock)
    sensor = SHT3x(chip, sleep=clock.sleep)
    chip.corrupt = True
    with pytest.raises(ClimateError, match="CRC mismatch"):
        sensor.read()
    chip.corrupt, chip.unplugged = False, True
    with pytest.raises(ClimateError, match="does not answer"):
        sensor.read()
    with pytest.raises(ClimateError, match="no measurement"):
        SHT3x(SimulatedSht3x(clock=clock), sleep=lambda s: None).read()  # never waits
    with pytest.raises(ClimateError, match="expected a number"):
        open_bus("i2c-one")


SETTINGS = ClimateSettings(rh_low_c100=6000, rh_high_c100=7000, hysteresis_c100=200,
                           telemetry_every_ms=60_000)


def types(drafts):
    return [d.type for d in drafts]


def test_crossings_are_alerts_with_hysteresis():
    w = ClimateWatch(SETTINGS)
    seq = [6500, 7001, 6950, 7050, 6850, 6801, 6799, 5990, 6100, 6200, 7100]
    seen = [types(w.reading(2000, rh, i * 1000)) for i, rh in enumerate(seq)]
    assert seen == [[], ["climate.out_of_range"], [], [], [], [], ["climate.in_range"],
                    ["climate.out_of_range"], [], ["climate.in_range"],
                    ["climate.out_of_range"]]


def test_telemetry_is_down_sampled():
    w = ClimateWatch(SETTINGS)
    out = []
    for i in range(0, 130):  # one reading a second for 130 s
        out += [d for d in w.reading(2000 + i % 3, 6500 + i % 5, i * 1000)
                if d.type == "climate.reading"]
    assert len(out) == 2
    assert out[0].body["samples"] == 61 and out[0].body["period_s"] == 60
    assert out[0].body["rh_min"] == "65.00" and out[0].body["rh_max"] == "65.04"
    assert out[0].body["rh_pct"] == "65.02"


def test_a_failing_sensor_is_one_alert_until_it_answers():
    w = ClimateWatch(SETTINGS)
    assert types(w.failure("no answer")) == ["climate.sensor_failed"]
    assert w.failure("no answer") == []
    assert types(w.reading(2000, 6500, 0)) == ["climate.sensor_restored"]


def test_a_band_and_a_fault_open_before_a_restart_are_closed_by_the_next_reading():
    w = ClimateWatch(SETTINGS)
    w.restore("high", "no answer")
    assert w.failure("no answer") == []                 # the same fault, not a new alert
    (restored, back) = w.reading(2000, 6500, 0)
    assert restored.type == "climate.sensor_restored" and restored.body == {"was": "no answer"}
    assert back.type == "climate.in_range" and back.body["was"] == "high"
    still = ClimateWatch(SETTINGS)
    still.restore("low", "")
    assert types(still.reading(2000, 5900, 0)) == []    # still too dry: nothing repeated

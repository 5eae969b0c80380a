"""The station's configuration sections: parsed into typed objects, errors name file and key."""

from decimal import Decimal

import pytest

from agent.config import load_config
from agent.errors import ConfigError
from tests.test_config import MINIMAL, write

STATION = MINIMAL + """
[station]
confirming_s = 90
[card]
reader = "ACR122"
issuer_public_key_file = "keys/issuer.pem"
[scale]
port = "socket://127.0.0.1:4001"
protocol = "toledo"
id = "bench-2"
division_g = "10"
capacity_g = "150000"
tare_g = 450
[printer]
url = "file:///dev/usb/lp0"
[signals]
status_light = 17
buzzer = 27
factory = "mock"
"""


def test_a_station_configuration_is_typed(tmp_path):
    cfg = load_config(write(tmp_path, STATION))
    assert cfg.section("station").timeouts.confirming_s == 90.0
    assert cfg.section("station").timeouts.weighing_s == 300.0
    card = cfg.section("card")
    assert card.reader == "ACR122" and card.issuer_public_key_file == tmp_path / "keys/issuer.pem"
    assert card.m1_master_key_file is None
    scale = cfg.section("scale")
    assert (scale.protocol, scale.scale_id, scale.tare_g) == ("toledo", "bench-2", 450)
    assert scale.division_g == Decimal("10") and scale.capacity_g == Decimal("150000")
    assert cfg.section("printer").url == "file:///dev/usb/lp0"
    assert (cfg.section("signals").status_light, cfg.section("signals").factory) == (17, "mock")


def test_a_plain_device_has_no_station(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.section("station") is None and cfg.section("scale") is None
    with pytest.raises(KeyError, match="not a known configuration section"):
        cfg.section("nonsense")


@pytest.mark.parametrize("old, new, words", [
    ('division_g = "10"', "division_g = 0.1", r"\[scale\] division_g: expected a decimal"),
    ('division_g = "10"', 'division_g = "-1"', r"\[scale\] division_g: expected a decimal"),
    ('protocol = "toledo"', 'protocol = "xk9"', r"\[scale\] protocol: expected one of"),
    ('capacity_g = "150000"', 'capacity_g = "5"', "capacity_g must be above division_g"),
    ('url = "file:///dev/usb/lp0"', 'url = "lpt1"', r"\[printer\] url: expected usb://"),
    ("buzzer = 27", "buzzer = 99", r"\[signals\] buzzer: expected an integer from 0 to 53"),
    ("confirming_s = 90", "confirming_s = 0", r"\[station\] confirming_s"),
    ('issuer_public_key_file = "keys/issuer.pem"', "", r"\[card\] issuer_public_key_file: "
                                                          "missing"),
])
def test_errors_name_the_file_the_key_and_what_was_expected(tmp_path, old, new, words):
    path = write(tmp_path, STATION.replace(old, new))
    with pytest.raises(ConfigError, match=words) as err:
        load_config(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("spec", ["xk3190-a9?mode=command&unit=g",
                                  "toledo?model=wildcat&checksum=0", "mt-sics?xonxoff=0",
                                  "ad-ascii", "coproc"])
def test_the_scale_protocol_takes_the_options_scale_watch_takes(tmp_path, spec):
    cfg = load_config(write(tmp_path, STATION.replace('protocol = "toledo"',
                                                      f'protocol = "{spec}"')))
    assert cfg.section("scale").protocol == spec


@pytest.mark.parametrize("spec, words", [
    ("xk3190-a9?mode=listen", "option mode='listen' must be continuous or command"),
    ("toledo?model=nonesuch", "option model='nonesuch' must be one of standard, wildcat"),
    ("ad-ascii?unit=g", "unknown option unit"),
    ("coproc?x=1", "unknown scale protocol"),
])
def test_a_bad_protocol_option_names_the_file_the_key_and_the_option(tmp_path, spec, words):
    path = write(tmp_path, STATION.replace('protocol = "toledo"', f'protocol = "{spec}"'))
    with pytest.raises(ConfigError, match=r"\[scale\] protocol: expected one of") as err:
        load_config(path)
    assert str(path) in str(err.value) and words in str(err.value)


@pytest.mark.parametrize("spec", ["xk3190-a9", "xk3190-a9?mode=command"])
def test_capacity_is_required_where_frames_carry_no_overload_flag(tmp_path, spec):
    text = STATION.replace('protocol = "toledo"', f'protocol = "{spec}"')
    path = write(tmp_path, text.replace('capacity_g = "150000"\n', ""))
    with pytest.raises(ConfigError, match=r"\[scale\] capacity_g: missing, expected the "
                                          r"scale's capacity \(Max\) in grams") as err:
        load_config(path)
    assert str(path) in str(err.value) and "no overload flag" in str(err.value)
    assert load_config(write(tmp_path, text)).section("scale").capacity_g == Decimal("150000")


@pytest.mark.parametrize("spec", ["toledo", "xk3190-a12", "mt-sics", "ad-ascii", "coproc"])
def test_capacity_stays_optional_where_frames_say_overload(tmp_path, spec):
    text = STATION.replace('protocol = "toledo"', f'protocol = "{spec}"')
    cfg = load_config(write(tmp_path, text.replace('capacity_g = "150000"\n', "")))
    assert cfg.section("scale").capacity_g is None

"""[station] keys for the card write's timeout and the station's local day."""

import pytest

from agent.config import load_config
from agent.errors import ConfigError
from tests.test_config import write
from tests.test_station_config import STATION


def test_the_card_write_timeout_is_configured_in_seconds(tmp_path):
    cfg = load_config(write(tmp_path, STATION))
    assert cfg.section("station").timeouts.card_write_s == 10.0
    cfg = load_config(write(tmp_path, STATION.replace("confirming_s = 90",
                                                      "confirming_s = 90\ncard_write_s = 4")))
    assert cfg.section("station").timeouts.card_write_s == 4.0
    with pytest.raises(ConfigError, match=r"\[station\] card_write_s"):
        load_config(write(tmp_path, STATION.replace("confirming_s = 90", "card_write_s = 0")))


def test_the_station_time_zone_defaults_to_china(tmp_path):
    from zoneinfo import ZoneInfo

    assert load_config(write(tmp_path, STATION)).section("station").timezone == ZoneInfo(
        "Asia/Shanghai")
    cfg = load_config(write(tmp_path, STATION.replace("confirming_s = 90",
                                                      'timezone = "Asia/Urumqi"')))
    assert cfg.section("station").timezone == ZoneInfo("Asia/Urumqi")


@pytest.mark.parametrize("name", ["Mars/Olympus", "asia/shanghai", "Asia", "../etc/passwd"])
def test_an_unknown_time_zone_is_a_configuration_error(tmp_path, name):
    path = write(tmp_path, STATION.replace("confirming_s = 90", f'timezone = "{name}"'))
    with pytest.raises(ConfigError, match=r"\[station\] timezone: expected an IANA time zone"):
        load_config(path)

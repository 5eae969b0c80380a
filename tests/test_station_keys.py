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

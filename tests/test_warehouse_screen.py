"""The [warehouse] section and the monitor's view (a pure rendering of the stored state)."""

from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.errors import ConfigError
from agent.warehouse.custody import Custody
from agent.warehouse.screen import LotLine, View, load_view, render
from agent.warehouse.store import WarehouseStore

NOW = datetime(2026, 6, 1, 8, 0, 0, tzinfo=timezone.utc)


def parse(table):
    raw = {"device": {"id": "wh-01", "data_dir": "/var/lib/x"},
           "mqtt": {"host": "127.0.0.1", "ca_file": "ca", "cert_file": "c", "key_file": "k"},
           "keys": {"ingest_public_key_file": "i"}, "warehouse": table}
    return parse_config(raw, Path("/etc/agent.toml")).section("warehouse")


def test_config_defaults_and_errors():
    c = parse({"readers": [{"name": "dock", "port": "/dev/ttyUSB0"}], "doors": {"main": 5}})
    assert c.presence.departed_after_ms == 600_000 and c.presence.moved_min_reads == 2
    assert c.snapshot_interval_s == 3600 and c.climate.rh_low_c100 == 6000
    assert c.readers[0].protocol == "bb7e" and c.doors == (("main", 5),)
    assert (c.readers[0].antennas, c.readers[0].silence_s) == ((), None)
    dock = parse({"readers": [{"name": "dock", "port": "llrp://10.0.0.5", "protocol": "llrp",
                               "antennas": [1, 3], "silence_s": 20}]}).readers[0]
    assert (dock.antennas, dock.silence_s) == ((1, 3), 20.0)
    with pytest.raises(ConfigError, match="antennas: expected a list"):
        parse({"readers": [{"name": "dock", "port": "x", "antennas": [0]}]})
    with pytest.raises(ConfigError, match="pin is used twice"):
        parse({"doors": {"main": 5}, "siren_pin": 5})
    with pytest.raises(ConfigError, match="rh_low must be below"):
        parse({"rh_low": "70", "rh_high": "60"})
    with pytest.raises(ConfigError, match="percentage"):
        parse({"rh_low": 60.5})
    with pytest.raises(ConfigError, match="unknown key"):
        parse({"departed_after": 5})
    with pytest.raises(ConfigError, match="HH:MM"):
        parse({"open_hours": "morning"})


def test_render_shows_lots_alerts_climate_and_readers():
    view = View("wh-01",
                (LotLine("LOT-1", "P-9", 40, 42, 37, 0, 5),
                 LotLine("LOT-2", None, None, 3, 3, 0, 0),
                 LotLine("LOT-3", "P-9", 10, 10, 4, 6, 0)),
                (("custody.breach", "lot LOT-1: tag aa left without a release",
                  NOW.timestamp() - 300),),
                ("19.50", "71.20", "high", None, NOW.timestamp() - 5),
                (("dock", "", ""), ("gate", "offline", "port vanished")), 1)
    text = render(view, NOW)
    lines = text.splitlines()
    lot1 = next(line for line in lines if line.strip().startswith("LOT-1"))
    assert lot1.split()[:6] == ["LOT-1", "P-9", "40", "37", "0", "5"] and "SHORT" in lot1
    assert "not pledged" in next(line for line in lines if "LOT-2" in line)
    assert "ok (some unknown)" in next(line for line in lines if "LOT-3" in line)
    assert "OPEN ALERTS (1)" in text and "5 min" in text
    assert "71.20 % RH   TOO HUMID" in text
    assert "gate                 DOWN (offline) port vanished" in text
    assert "1 receipt(s) waiting" in text


def test_view_is_loaded_from_the_store(tmp_path):
    store = WarehouseStore(tmp_path / "w.sqlite")
    c = Custody()
    c.receive("LOT-1", ["s/1"], ["aa", "bb", "cc"])
    c.pledge("P-1", {"lots": ["LOT-1"], "tags": 3, "kg": "10"})
    store.save_custody(c)
    store.save_tags([("aa", "present", "dock", 1), ("bb", "departed", "dock", 1)])
    store.open_alert("shortfall:P-1", "custody.shortfall", "pledge P-1: 1 of 3 tags in stock")
    store.save_reader("dock", "", "")
    store.close()
    view = load_view(tmp_path / "w.sqlite", "wh-01")
    assert view.lots == (LotLine("LOT-1", "P-1", 3, 3, 1, 0, 1),)
    assert "SHORT" in render(view, NOW) and "no reading yet" in render(view, NOW)

"""The [warehouse] section and the monitor's view (a pure rendering of the stored state)."""

from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.errors import ConfigError
from agent.warehouse.custody import Custody
from agent.warehouse.screen import LotLine, PledgeLine, View, load_view, render
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


def test_render_shows_lots_pledges_alerts_climate_and_readers():
    view = View("wh-01",
                (LotLine("LOT-1", "P-9", 42, 37, 0, 5),
                 LotLine("LOT-2", None, 3, 3, 0, 0),
                 LotLine("LOT-3", "P-9", 10, 4, 6, 0)),
                (PledgeLine("P-9", ("LOT-1", "LOT-3"), 50, 0, 41, 6),),
                (("custody.breach", "lot LOT-1: tag aa left without a release",
                  NOW.timestamp() - 300),),
                ("19.50", "71.20", "high", None, NOW.timestamp() - 5),
                (("dock", "", ""), ("gate", "offline", "port vanished")), 1)
    text = render(view, NOW)
    lines = text.splitlines()
    lot1 = next(line for line in lines if line.strip().startswith("LOT-1"))
    assert lot1.split() == ["LOT-1", "P-9", "42", "37", "0", "5"]
    assert next(line for line in lines if "LOT-2" in line).split()[1] == "-"
    p9 = next(line for line in lines if line.strip().startswith("P-9"))
    assert p9.split() == ["P-9", "2", "50", "0", "41", "6", "SHORT", "by", "3"]
    assert "OPEN ALERTS (1)" in text and "5 min" in text
    assert "71.20 % RH   TOO HUMID" in text
    assert "gate                 DOWN (offline) port vanished" in text
    assert "1 receipt(s) waiting" in text


def _store_with(tmp_path, pledges, tags):
    store = WarehouseStore(tmp_path / "w.sqlite")
    c = Custody()
    c.receive("LOT-1", ["s/1"], ["aa", "bb", "cc"])
    c.receive("LOT-2", ["s/2"], ["dd", "ee"])
    c.receive("LOT-3", ["s/3"], ["ff"])
    for pid, body in pledges:
        c.pledge(pid, body)
    store.save_custody(c)
    store.save_tags(tags)
    store.save_reader("dock", "", "")
    store.close()
    return load_view(tmp_path / "w.sqlite", "wh-01")


def test_view_is_loaded_from_the_store(tmp_path):
    view = _store_with(tmp_path, [("P-1", {"lots": ["LOT-1"], "tags": 3, "kg": "10"})],
                       [("aa", "present", "dock", 1), ("bb", "departed", "dock", 1)])
    assert view.lots[0] == LotLine("LOT-1", "P-1", 3, 1, 0, 1)
    assert view.pledges == (PledgeLine("P-1", ("LOT-1",), 3, 0, 1, 0),)
    assert view.pledges[0].state == "SHORT by 2"
    assert "SHORT by 2" in render(view, NOW) and "no reading yet" in render(view, NOW)


def test_a_multi_lot_pledge_is_judged_over_all_its_lots(tmp_path):
    """P-1 pledges 4 of the 5 tags of LOT-1 and LOT-2: with LOT-1's three and one of LOT-2's
    in stock it is whole, though LOT-2 alone holds fewer than 4. P-2 (LOT-3) is short."""
    view = _store_with(
        tmp_path,
        [("P-1", {"lots": ["LOT-1", "LOT-2"], "tags": 4, "kg": "20"}),
         ("P-2", {"lots": ["LOT-3"], "tags": 1, "kg": "5"})],
        [("aa", "present", "dock", 1), ("bb", "present", "dock", 1),
         ("cc", "unknown", "dock", 1), ("dd", "present", "dock", 2),
         ("ee", "departed", "dock", 2), ("ff", "departed", "dock", 3)])
    assert view.lots == (LotLine("LOT-1", "P-1", 3, 2, 1, 0),
                         LotLine("LOT-2", "P-1", 2, 1, 0, 1),
                         LotLine("LOT-3", "P-2", 1, 0, 0, 1))
    p1, p2 = view.pledges
    assert (p1.lots, p1.pledged, p1.present, p1.unknown) == (("LOT-1", "LOT-2"), 4, 3, 1)
    assert p1.state == "ok (some unknown)" and p2.state == "SHORT by 1"
    text = render(view, NOW)
    assert "SHORT" not in next(line for line in text.splitlines()
                               if line.strip().startswith("LOT-2"))
    assert [line.split()[-1] for line in text.splitlines()
            if line.strip().startswith(("P-1", "P-2"))] == ["unknown)", "1"]


LONG = View("wh-01", (LotLine("LOT-1206-231939", "P-LOT-1206-231939", 6, 5, 0, 1),),
            (PledgeLine("P-LOT-1206-231939", ("LOT-1206-231939",), 6, 0, 5, 0),),
            (("custody.breach", "lot LOT-1206-231939: tag e280859a4df7266001105028 left "
              "without a release", NOW.timestamp() - 30),),
            None, (("dock", "", ""),), 0, NOW.timestamp() - 3)


@pytest.mark.parametrize("width", [40, 60, 80, 100, 200])
def test_the_view_fits_its_width_and_never_cuts_an_id(width):
    text = render(LONG, NOW, width)
    words = text.split()
    assert words.count("P-LOT-1206-231939") == 2            # the lot's line and the pledge's
    assert "e280859a4df7266001105028" in words
    assert "THE AGENT IS STOPPED" not in text
    assert [line for line in text.splitlines() if len(line) > width] == []


def test_the_view_says_when_the_agent_stopped_reporting():
    stopped = View(*LONG.__dict__.values())
    object.__setattr__(stopped, "alive", NOW.timestamp() - 600)
    text = render(stopped, NOW, 80)
    assert "THE AGENT IS STOPPED" in text and "10 min ago" in text
    assert all(len(line) <= 80 for line in text.splitlines()[:6])


CONFIG = """\
[device]
id = "wh-01"
data_dir = "data"
[mqtt]
host = "127.0.0.1"
ca_file = "ca.pem"
cert_file = "dev.pem"
key_file = "dev.key"
[keys]
ingest_public_key_file = "ingest.pem"
[warehouse]
"""


def test_once_exits_non_zero_while_alerts_are_open_or_the_agent_stopped(tmp_path):
    import time

    from click.testing import CliRunner

    from agent.cli.main import cli
    from agent.cli.warehouse import AGENT_STOPPED, ALERTS_OPEN

    config = tmp_path / "agent.toml"
    config.write_text(CONFIG)
    (tmp_path / "data").mkdir()
    store = WarehouseStore(tmp_path / "data" / "warehouse.sqlite")
    c = Custody()
    c.receive("LOT-1206-231939", ["s/1"], ["aa", "bb"])
    c.pledge("P-LOT-1206-231939", {"lots": ["LOT-1206-231939"], "tags": 2, "kg": "10"})
    store.save_custody(c)
    store.set_meta("alive", str(time.time()))

    def once(*extra):
        return CliRunner().invoke(cli, ["--config", str(config), "warehouse", "--once",
                                        *extra], env={"COLUMNS": "60"})

    result = once()
    assert result.exit_code == 0, result.output
    assert "P-LOT-1206-231939" in result.output.split()
    assert max(len(line) for line in result.output.splitlines()) <= 60
    store.open_alert("breach:aa", "custody.breach", "lot LOT-1206-231939: tag aa left", 18)
    assert once().exit_code == ALERTS_OPEN
    assert once("--width", "120").exit_code == ALERTS_OPEN
    store.close_alert("breach:aa")
    store.set_meta("alive", str(time.time() - 120))
    result = once()
    assert result.exit_code == AGENT_STOPPED and "THE AGENT IS STOPPED" in result.output
    store.close()
    help_text = CliRunner().invoke(cli, ["--config", str(config), "warehouse", "--help"]).output
    assert "3  at least one alert is open" in help_text and "4  the agent has stopped" in help_text

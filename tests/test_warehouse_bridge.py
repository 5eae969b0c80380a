"""The warehouse reads tags through the field box's co-processor: a [[warehouse.readers]]
entry with protocol `coproc` opens the firmware bridge on the box's UART (a pty with the
co-processor simulator), and the box's tag reads and health reach presence unchanged."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from agent.config import parse_config
from agent.contract.envelope import parse_json_object
from agent.errors import ConfigError
from agent.warehouse.presence import TagStatus
from agent.warehouse.service import Warehouse
from firmware_bridge.readers import BridgeClimate, BridgeTagReader
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.coprocessor",)

EPC = "e28011606000020a4b7c3d01"


def config(tmp_path: Path, port: str, **extra):
    raw = {"device": {"id": "wh-01", "data_dir": str(tmp_path)},
           "mqtt": {"host": "127.0.0.1", "ca_file": "ca", "cert_file": "c", "key_file": "k"},
           "keys": {"ingest_public_key_file": "i"},
           "warehouse": {"readers": [{"name": "box", "port": port, "protocol": "coproc",
                                      "silence_s": 3}], **extra}}
    return parse_config(raw, tmp_path / "agent.toml").section("warehouse")


def test_tags_read_by_the_field_box_reach_presence(field_box, make_outbox, tmp_path):
    box, _ = field_box(bridge=False)                 # the box only: the warehouse opens it
    w = Warehouse(make_outbox(device="wh-01"), config(tmp_path, str(field_box.pair.device)),
                  tmp_path, pin_factory=MockFactory())
    (reader,) = w.readers
    assert isinstance(reader, BridgeTagReader) and reader.name == "box"
    stop = threading.Event()
    w.start(stop)
    try:
        def seen():
            box.tag_seen(EPC, rssi=-52, antenna=2)
            return w.presence.status(EPC) is TagStatus.PRESENT

        wait_for(seen, 10, interval=0.2, what="the box's tag read in presence")
        assert "box" not in w.presence.readers_down()
    finally:
        stop.set()
        w.close()


def test_climate_from_the_field_box_through_the_shared_bridge(field_box, make_outbox, tmp_path):
    box, _ = field_box(bridge=False, period_s=0.05)
    port = str(field_box.pair.device)
    box.set_climate(2150, 6500)
    outbox = make_outbox(device="wh-01")
    w = Warehouse(outbox, config(tmp_path, port, climate_bus=f"coproc:{port}",
                                 climate_poll_s=3600, climate_telemetry_s=0),
                  tmp_path, pin_factory=MockFactory())
    assert isinstance(w.sensor, BridgeClimate)
    assert w.sensor.bridge is w.readers[0].bridge        # one link to the box, shared

    def types():
        return [e["type"] for e in (parse_json_object(r.payload)
                                    for r in outbox.pending(1000))
                if e["type"].startswith("climate.") and e["type"] != "climate.reading"]

    stop = threading.Event()
    w.start(stop)          # the first poll waits for the box to come up: no false failure
    try:
        wait_for(lambda: w.store.load_climate() is not None, 10, what="the first reading")
        assert w.store.load_climate()[:4] == ("21.50", "65.00", "ok", None)
        box.set_climate(2210, 7150)

        def too_humid():
            w.poll_climate()
            return types() == ["climate.out_of_range"]
        wait_for(too_humid, 5, interval=0.1, what="climate.out_of_range from the box")
        box.set_climate(None)                            # the box's sensor fails
        wait_for(lambda: w.poll_climate() or "climate.sensor_failed" in types(), 5,
                 interval=0.1, what="climate.sensor_failed")
        box.set_climate(2200, 6600)
        wait_for(lambda: w.poll_climate() or "climate.in_range" in types(), 5,
                 interval=0.1, what="climate.in_range")
        assert types() == ["climate.out_of_range", "climate.sensor_failed",
                           "climate.sensor_restored", "climate.in_range"]
    finally:
        stop.set()
        w.close()
    assert w.sensor.bridge.status.state.value == "closed"   # the last user released it


@pytest.mark.parametrize("bus", ["coproc:", "i2c-one", "ttyAMA0"])
def test_a_climate_bus_of_no_known_form_is_refused_when_parsed(tmp_path, bus):
    with pytest.raises(ConfigError, match=r"climate_bus: expected .*coproc:"):
        config(tmp_path, "/dev/ttyAMA0", climate_bus=bus)

"""The warehouse reads tags through the field box's co-processor: a [[warehouse.readers]]
entry with protocol `coproc` opens the firmware bridge on the box's UART (a pty with the
co-processor simulator), and the box's tag reads and health reach presence unchanged."""

from __future__ import annotations

import threading
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from agent.config import parse_config
from agent.warehouse.presence import TagStatus
from agent.warehouse.service import Warehouse
from firmware_bridge.readers import BridgeTagReader
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.coprocessor",)

EPC = "e28011606000020a4b7c3d01"


def config(tmp_path: Path, port: str):
    raw = {"device": {"id": "wh-01", "data_dir": str(tmp_path)},
           "mqtt": {"host": "127.0.0.1", "ca_file": "ca", "cert_file": "c", "key_file": "k"},
           "keys": {"ingest_public_key_file": "i"},
           "warehouse": {"readers": [{"name": "box", "port": port, "protocol": "coproc",
                                      "silence_s": 3}]}}
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

"""A corrupt outbox is quarantined, never wiped; the chain continues from the last good event."""

import os
import sqlite3

from agent.config import load_config
from agent.contract.chain import check_capture
from agent.contract.envelope import parse_json_object
from agent.contract.events import Draft
from agent.contract.signing import Verifier, generate_key_file
from agent.demo.sandbox import write_toml
from agent.ops.service import open_outbox


def make_config(tmp_path):
    path = write_toml(tmp_path / "agent.toml", {
        "device": {"id": "dev-a", "data_dir": "data"},
        "mqtt": {"host": "127.0.0.1", "ca_file": "ca.pem", "cert_file": "c.pem",
                 "key_file": "c.key"},
        "keys": {"ingest_public_key_file": "ingest.pem"},
        "outbox": {"telemetry_batch_ms": 0},
    })
    config = load_config(path)
    signer = generate_key_file(config.device.signing_key_file)
    return config, signer


def test_healthy_outbox_is_left_alone(tmp_path):
    config, _ = make_config(tmp_path)
    ob, salvage = open_outbox(config)
    ob.append(Draft("test.x", "money", {}))
    ob.close()
    ob, salvage = open_outbox(config)
    assert salvage is None and ob.stats().head_seq == 1
    ob.close()
    assert not list(config.device.data_dir.glob("*.corrupt-*"))


def test_corrupt_outbox_is_quarantined_and_the_chain_continues(tmp_path):
    config, signer = make_config(tmp_path)
    ob, _ = open_outbox(config)
    for i in range(300):
        ob.append(Draft("test.money", "money", {"pad": "x" * 300, "i": i}))
    ob.acknowledge(10, ob.event_hash(10))
    ob.close()
    conn = sqlite3.connect(config.outbox_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    leaves = [n for (n,) in conn.execute(
        "SELECT pageno FROM dbstat WHERE name = 'events' AND pagetype = 'leaf' ORDER BY pageno")]
    conn.close()
    with open(config.outbox_path, "r+b") as fh:  # destroy one leaf page of the events b-tree
        fh.seek(4096 * (leaves[len(leaves) // 2] - 1))
        fh.write(os.urandom(4096))

    ob, salvage = open_outbox(config)
    try:
        quarantined = [p for p in config.device.data_dir.glob("outbox.sqlite.corrupt-*")
                       if not p.name.endswith(("-wal", "-shm"))]
        assert len(quarantined) == 1 and quarantined[0].stat().st_size > 300 * 300  # kept
        assert salvage.head_seq == 300 and salvage.errors
        stored = [parse_json_object(s.payload) for s in ob.pending(10**6)]
        resumed, alert = stored[-2:]
        assert alert["type"] == "outbox.quarantined" and alert["seq"] == 302
        assert alert["body"]["chain_continues_from"] == 300
        # the rows of the destroyed page are declared, the chain goes on after seq 300
        missing = set(range(11, 301)) - {e["seq"] for e in stored}
        assert resumed["type"] == "chain.resumed" and resumed["seq"] == 301
        assert resumed["body"]["after_seq"] == 300
        assert resumed["prev"] == resumed["body"]["after_hash"] == ob.event_hash(300)
        declared = {n for r in resumed["body"]["lost"] for n in range(r["from"], r["to"] + 1)}
        assert missing and declared == missing
        assert alert["body"]["salvaged_events"] == len(salvage.rows) > 0
        # every salvaged event is still unacknowledged and intact
        salvaged = [e for e in stored if e["type"] == "test.money"]
        assert all(e["seq"] > 10 for e in salvaged)
        report = check_capture([s.payload for s in ob.pending(10**6)],
                               Verifier.from_pem(signer.public_key_pem()))
        assert report.counts["bad_signature"] == 0 and report.counts["broken_link"] == 0
        assert ob.append(Draft("test.money", "money", {})) == 303
    finally:
        ob.close()

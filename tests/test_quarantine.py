"""Quarantine of a damaged outbox is complete and atomic.

Complete: every table is carried over as far as it is readable, so a signed command is not
accepted twice, voucher numbers do not restart, sales, the card blacklist and emit keys stay.
Atomic: killed at any step, the next start finds either the damaged outbox or the rebuilt one,
never a fresh chain; the 40 unacknowledged money events are all there, and the alert is
recorded exactly once. `COCOON_FAULTS_ALL=1` tries every step; by default 50 of them, spread
evenly, are tried (the count of steps and of points tried is printed).
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.config import load_config
from agent.contract.canonical import sha256_hex
from agent.contract.chain import check_capture
from agent.contract.commands import BACKEND, BANK, make_command
from agent.contract.envelope import parse_json_object
from agent.contract.events import Draft
from agent.contract.signing import Ed25519Signer, Verifier, generate_key_file
from agent.demo.sandbox import write_toml
from agent.ops.service import open_outbox
from agent.spine.dispatcher import Dispatcher
from agent.spine.idempotency import AlreadyRecorded, record_once

REPO = Path(__file__).resolve().parent.parent
MONEY = 40
NOW = datetime(2026, 6, 1, 8, 0, tzinfo=timezone.utc)


def make_device(root: Path):
    path = write_toml(root / "agent.toml", {
        "device": {"id": "dev-a", "data_dir": "data"},
        "mqtt": {"host": "127.0.0.1", "ca_file": "ca.pem", "cert_file": "c.pem",
                 "key_file": "c.key"},
        "keys": {"ingest_public_key_file": "ingest.pem"},
        "outbox": {"telemetry_batch_ms": 0},
    })
    config = load_config(path)
    return config, generate_key_file(config.device.signing_key_file)


def damage_an_index(path: Path) -> None:
    """Destroy a page of the pending-events index: every row stays readable, but the file
    fails its integrity check."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = [n for (n,) in conn.execute(
        "SELECT pageno FROM dbstat WHERE name = 'events_pending' ORDER BY pageno")]
    conn.close()
    with open(path, "r+b") as fh:
        fh.seek(4096 * (pages[-1] - 1))
        fh.write(b"\xff" * 4096)


@pytest.fixture(scope="module")
def bank():
    return Ed25519Signer.generate()


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, bank):
    """A device whose damaged outbox holds 40 unacknowledged sales and every side table."""
    root = tmp_path_factory.mktemp("damaged")
    config, signer = make_device(root)
    outbox, _ = open_outbox(config)
    for i in range(MONEY):
        outbox.append(Draft("purchase.recorded", "money", {"voucher": f"V-{i}", "pad": "x" * 200}))
    disp = Dispatcher("dev-a", outbox, {BANK: Verifier.from_pem(bank.public_key_pem()),
                                        BACKEND: None}, now=lambda: NOW)
    disp.register("payment.confirmed", lambda cmd: None)
    command = make_command("dev-a", "payment.confirmed", {"purchase": "V-1"}, bank, now=NOW)
    assert disp.handle(json.dumps(command).encode()) is not None
    keyed = outbox.append(Draft("test.manual", "alert", {}), within=record_once("k-1"))
    outbox.write_all([
        ("INSERT INTO vouchers (day, last) VALUES (?, ?)", [("20260601", 40)]),
        ("INSERT INTO sales (seq, voucher, farmer_id, card_uid, net_g, amount, created) "
         "VALUES (?, ?, ?, ?, ?, ?, ?)",
         [(i + 1, f"V-{i}", f"F-{i}", "04aa", 50_000, "2000.00", 1.0) for i in range(MONEY)]),
        ("INSERT INTO blacklist (card_uid, reason) VALUES (?, ?)", [("04bad", "stolen")]),
        ("UPDATE meta SET value = '7' WHERE key = 'blacklist_version'", None),
    ])
    hashes = {s.seq: sha256_hex(s.payload) for s in outbox.pending(1000)}
    outbox.close()
    damage_an_index(config.outbox_path)
    return {"root": root, "config": config, "signer": signer, "command": command,
            "keyed": keyed, "hashes": hashes}


def copy_device(damaged, dest: Path):
    shutil.copytree(damaged["root"], dest)
    return load_config(dest / "agent.toml")


def events(outbox) -> list[dict]:
    return [parse_json_object(s.payload) | {"hash": sha256_hex(s.payload)}
            for s in outbox.pending(10**6)]


def test_every_table_is_carried_over(damaged, bank, tmp_path):
    config = copy_device(damaged, tmp_path / "dev")
    outbox, salvage = open_outbox(config)
    try:
        assert salvage is not None and outbox.head_seq() == len(damaged["hashes"]) + 1
        disp = Dispatcher("dev-a", outbox, {BANK: Verifier.from_pem(bank.public_key_pem()),
                                            BACKEND: None}, now=lambda: NOW)
        disp.register("payment.confirmed", lambda cmd: None)
        assert disp.handle(json.dumps(damaged["command"]).encode()) is None   # a replay
        assert "replay" in events(outbox)[-1]["body"]["reason"]
        with pytest.raises(AlreadyRecorded) as again:
            outbox.append(Draft("test.manual", "alert", {}), within=record_once("k-1"))
        assert again.value.seq == damaged["keyed"]
        assert outbox.read("SELECT day, last FROM vouchers") == [("20260601", 40)]
        assert outbox.read("SELECT count(*) FROM sales") == [(MONEY,)]
        assert outbox.read("SELECT card_uid FROM blacklist") == [("04bad",)]
        assert outbox.read("SELECT value FROM meta WHERE key = 'blacklist_version'") == [("7",)]
        assert outbox.read("SELECT value FROM meta WHERE key = 'command_clock'")[0][0]
    finally:
        outbox.close()


def check_after_a_crash(config, damaged, signer) -> None:
    """The next start after a kill: the rebuilt outbox or the damaged one quarantined now;
    either way every sale is there with its hash, the chain links, one alert."""
    outbox, _ = open_outbox(config)
    try:
        stored = events(outbox)
    finally:
        outbox.close()
    by_seq = {e["seq"]: e["hash"] for e in stored}
    for seq, digest in damaged["hashes"].items():
        assert by_seq.get(seq) == digest, f"event {seq} lost or changed"
    alerts = [e for e in stored if e["type"] == "outbox.quarantined"]
    assert len(alerts) == 1, [e["type"] for e in stored]
    report = check_capture(_payloads(config), Verifier.from_pem(signer.public_key_pem()))
    assert report.counts["broken_link"] == 0 and report.counts["bad_signature"] == 0
    corrupt = [p for p in config.device.data_dir.glob("outbox.sqlite.corrupt-*")
               if not p.name.endswith(("-wal", "-shm"))]
    assert len(corrupt) == 1                       # the damaged file, kept, under one name
    assert not list(config.device.data_dir.glob("outbox.sqlite.rebuil*"))


def _payloads(config) -> list[bytes]:
    conn = sqlite3.connect(config.outbox_path)
    try:
        return [p for (p,) in conn.execute("SELECT payload FROM events ORDER BY seq")]
    finally:
        conn.close()


def worker(config, kill_at: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.support.quarantine_worker",
                           str(config.path), str(kill_at)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_a_kill_at_any_step_of_the_quarantine_loses_nothing(damaged, tmp_path):
    whole = worker(copy_device(damaged, tmp_path / "whole"), 0)
    assert whole.returncode == 0, whole.stderr
    steps = int(whole.stdout.split()[1])
    if os.environ.get("COCOON_FAULTS_ALL") == "1":
        points = list(range(1, steps + 1))
    else:
        points = sorted({1 + (steps - 1) * i // 49 for i in range(50)})
    killed = 0
    for point in points:
        config = copy_device(damaged, tmp_path / f"kill-{point}")
        done = worker(config, point)
        killed += done.returncode == -9
        check_after_a_crash(config, damaged, damaged["signer"])
        shutil.rmtree(tmp_path / f"kill-{point}")
    print(f"quarantine: {steps} steps, {len(points)} kill points tried, {killed} killed, "
          f"0 events lost, 0 alerts doubled")
    assert killed == len(points)

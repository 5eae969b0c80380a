"""SIGKILL the agent at many moments of append, publish and ack handling; lose nothing.

A real local site (Mosquitto with TLS, the ingest in a thread of this process) and the real
agent in a subprocess (tests/crash_worker.py) whose producers journal every seq that append()
returned. The agent is killed 50+ times, each a seeded-random 0.05-0.6 s after it came up; then
it runs once more until the ingest has acknowledged everything. The ingest must then hold every
journaled event exactly once, with the body it was given, as one intact signed chain.
"""

from __future__ import annotations

import os
import random
import selectors
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from agent.config import load_config
from agent.contract.chain import check_capture
from agent.contract.envelope import parse_json_object
from agent.contract.signing import Verifier
from agent.demo.sandbox import Site
from ingest.config import load_ingest_config
from ingest.service import Ingest

DEVICE = "dev-a"
KILLS = 60
SEED = 1729
WORKER = Path(__file__).with_name("crash_worker.py")
READY_TIMEOUT_S = 20.0
DRAIN_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 15.0


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def read_rows(path: Path, sql: str, args=()) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def snapshot_outbox(outbox: Path, scratch: Path) -> dict:
    """What the killed agent left on disk, read from a copy so its WAL is left as it was."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    copy = scratch / outbox.name
    for suffix in ("", "-wal"):
        src = Path(f"{outbox}{suffix}")
        if src.exists():
            shutil.copyfile(src, f"{copy}{suffix}")
    conn = sqlite3.connect(copy)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        states = dict(conn.execute("SELECT state, count(*) FROM events GROUP BY state").fetchall())
    finally:
        conn.close()
    return {"head": int(meta["head_seq"]), "acked": int(meta["acked_seq"]),
            "pending": states.get(0, 0), "sent": states.get(1, 0)}


def read_journal(path: Path) -> list[tuple[int, str]]:
    entries = []
    if not path.exists():
        return entries
    for line in path.read_text(encoding="utf-8").splitlines():
        seq, uid = line.split()
        entries.append((int(seq), uid))
    return entries


class WorkerProcess:
    def __init__(self, config: Path, journal: Path, log: Path, run: int, *extra: str):
        self.log = log
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(WORKER), str(config), str(journal), "--run", str(run),
                 *extra],
                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
            )

    def wait_ready(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    line = self.proc.stdout.readline()
                    if line.strip() == b"READY":
                        return
                    if not line:
                        break
        finally:
            sel.close()
        self.kill()
        raise AssertionError(f"worker did not come up; its log:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(EXIT_TIMEOUT_S)
        self.proc.stdout.close()


@pytest.mark.slow
def test_sigkill_loop_loses_no_returned_event(tmp_path):
    site = Site.create(tmp_path / "site")
    config_path = site.add_device(
        DEVICE,
        mqtt={"ack_timeout_s": 2, "keepalive_s": 2, "reconnect_min_s": 0.05,
              "reconnect_max_s": 0.3},
        device={"heartbeat_interval_s": 0.5},
        outbox={"telemetry_batch_ms": 20},
    )
    site.start_broker()
    ingest_stop = threading.Event()
    ingest_thread = None
    workers: list[WorkerProcess] = []
    try:
        ingest = Ingest(load_ingest_config(site.ingest_config))
        store_path = ingest.store.path
        ingest_thread = threading.Thread(target=ingest.run, args=(ingest_stop,), name="ingest",
                                         daemon=True)
        ingest_thread.start()
        outbox_path = load_config(config_path).outbox_path
        journal = tmp_path / "journal.txt"
        logs = tmp_path / "worker-logs"
        logs.mkdir()

        def watermark() -> int:
            rows = read_rows(store_path, "SELECT watermark FROM devices WHERE device = ?",
                             (DEVICE,)) if store_path.exists() else []
            return rows[0][0] if rows else 0

        # -- the kill loop ----------------------------------------------------------------
        rng = random.Random(SEED)
        moments, acked_before = [], 0
        for run in range(KILLS):
            journaled_before, wm_before = len(read_journal(journal)), watermark()
            worker = WorkerProcess(config_path, journal, logs / f"run-{run:02d}.log", run)
            workers.append(worker)
            worker.wait_ready()
            delay = rng.uniform(0.05, 0.6)
            try:
                worker.proc.wait(timeout=delay)  # it must still be running when the kill comes
            except subprocess.TimeoutExpired:
                pass
            else:
                raise AssertionError(f"worker exited early ({worker.proc.returncode}):\n"
                                     f"{worker.tail()}")
            worker.kill()
            state = snapshot_outbox(outbox_path, tmp_path / "snapshot")
            moments.append({"delay": delay,
                            "appended": len(read_journal(journal)) - journaled_before,
                            "ingest_progress": watermark() - wm_before,
                            "ingest_watermark": watermark(),
                            "acks_applied": state["acked"] - acked_before, **state})
            acked_before = state["acked"]

        # -- the final run: drain ----------------------------------------------------------
        # The drain run appends its own `agent.started` (telemetry: committed up to a batch
        # window after READY); the backlog counts as drained only once that is acknowledged
        # too, or the run could be stopped before it was ever sent.
        head_before = int(dict(read_rows(outbox_path, "SELECT key, value FROM meta"))["head_seq"])
        worker = WorkerProcess(config_path, journal, logs / "drain.log", KILLS, "--drain")
        workers.append(worker)
        worker.wait_ready()

        def drained():
            meta = dict(read_rows(outbox_path, "SELECT key, value FROM meta"))
            left = read_rows(outbox_path, "SELECT count(*) FROM events")[0][0]
            head = int(meta["head_seq"])
            return head > head_before and watermark() == head \
                and int(meta["acked_seq"]) == head and left == 0

        try:
            wait_until(drained, DRAIN_TIMEOUT_S, "the ingest to acknowledge the whole outbox")
        except AssertionError as exc:
            meta = dict(read_rows(outbox_path, "SELECT key, value FROM meta"))
            raise AssertionError(f"{exc}: outbox {meta}, ingest watermark {watermark()}, "
                                 f"ingest alive {ingest_thread.is_alive()}; drain log:\n"
                                 f"{worker.tail()}") from None
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(EXIT_TIMEOUT_S) == 0, worker.tail()
        worker.proc.stdout.close()
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.kill()
        ingest_stop.set()
        if ingest_thread is not None:
            ingest_thread.join(EXIT_TIMEOUT_S)
        site.broker.stop()
    assert ingest_thread is not None and not ingest_thread.is_alive()

    # -- what must hold ------------------------------------------------------------------
    summary = "\n".join(str(m) for m in moments)
    entries = read_journal(journal)
    journaled = dict(entries)
    assert len(journaled) == len(entries), "append() returned the same seq twice"

    stored = read_rows(store_path, "SELECT seq, payload FROM events WHERE device = ? ORDER BY seq",
                       (DEVICE,))
    seqs = [s for s, _ in stored]
    final = dict(read_rows(outbox_path, "SELECT key, value FROM meta"))
    head = int(final["head_seq"])
    assert seqs == list(range(1, head + 1)), "the ingest's seqs are not exactly 1..head"
    assert int(final["acked_seq"]) == head and watermark() == head
    assert read_rows(outbox_path, "SELECT count(*) FROM events")[0][0] == 0

    rejections = read_rows(store_path, "SELECT seq, reason FROM rejections")
    assert not rejections, f"the ingest rejected events: {rejections[:10]}"

    bodies = {s: parse_json_object(bytes(p))["body"] for s, p in stored}
    wrong = {s: (u, bodies.get(s, {}).get("uid")) for s, u in journaled.items()
             if bodies.get(s, {}).get("uid") != u}
    assert not wrong, f"journaled events missing or different: {list(wrong.items())[:10]}"
    uids = Counter(b["uid"] for b in bodies.values() if "uid" in b)
    assert not [u for u, n in uids.items() if n > 1], "an event was stored twice under two seqs"

    verifier = Verifier.from_file(site.device_public_key(DEVICE))
    report = check_capture([bytes(p) for _, p in stored], verifier)
    assert report.ok and report.events == head, report.problems[:10]

    # The kills must have hit different kinds of moments, not just start-up (loose bounds: a
    # loaded machine does less per run).
    assert len(moments) >= 50 and len({m["delay"] for m in moments}) == len(moments)
    assert sum(m["appended"] > 0 for m in moments) >= KILLS // 2, summary  # mid-append
    # published, not yet acked: marked sent, or already stored by the ingest beyond the
    # agent's ack watermark (the uplink writes "sent" marks in batches, so the kill often comes
    # before they reach the file)
    assert sum(m["sent"] > 0 or m["ingest_watermark"] > m["acked"] for m in moments) >= 3, \
        summary
    assert sum(m["pending"] > 0 for m in moments) >= 3, summary  # appended, not yet published
    assert sum(m["acks_applied"] > 0 for m in moments) >= KILLS // 4, summary  # ack handling
    assert len(journaled) >= 200, summary

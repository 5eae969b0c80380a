"""Power loss, not just SIGKILL: no event whose `append()` returned may be lost.

The outbox runs over tests/support/powerloss.py, an apsw VFS that keeps every write in memory
until the file is fsynced and throws the unsynced ones away (or, "torn", keeps a random subset
of their sectors) when the power is cut. The file is then reopened with plain sqlite3, as the
agent would after the reboot, and every event whose append() returned must be there, with the
body it was given and an intact, signed chain.
"""

from __future__ import annotations

import itertools
import os
import random
import sqlite3
import threading
import time
from pathlib import Path

import apsw
import pytest

from agent.contract import events
from agent.contract.chain import check_capture
from agent.contract.envelope import parse_json_object
from agent.contract.events import Draft
from agent.contract.signing import Ed25519Signer, Verifier
from agent.errors import OutboxError
from agent.spine import recovery
from agent.spine.outbox import Outbox
from tests.support.powerloss import PowerCut, PowerLossVFS

pytestmark = pytest.mark.slow

DEVICE = "dev-a"
SEEDS = range(20)
THREADS = 4
PER_THREAD = 10
PRIORITIES = ("money", "telemetry", "alert", "telemetry", "telemetry", "money")
JOIN_TIMEOUT_S = 30.0
_names = itertools.count()


@pytest.fixture(scope="module")
def signer():
    return Ed25519Signer.generate()


class Workload:
    """THREADS appenders, mixed priorities, group commit; records what append() returned."""

    def __init__(self, outbox: Outbox):
        self.outbox = outbox
        self.returned: dict[int, str] = {}  # seq -> uid of the body it was given
        self.failures: list[BaseException] = []
        self.failed_uids: list[str] = []
        self.bad_returns: list[str] = []
        self._lock = threading.Lock()

    def _appender(self, t: int) -> None:
        for n in range(PER_THREAD):
            uid = f"t{t}-{n}"
            try:
                seq = self.outbox.append(Draft("test.power", PRIORITIES[(t + n) % 6],
                                               {"uid": uid}))
            except OutboxError as exc:  # what a failed commit must look like to the caller
                with self._lock:
                    self.failures.append(exc)
                    self.failed_uids.append(uid)
                return
            except BaseException as exc:  # anything else is a contract breach
                with self._lock:
                    self.bad_returns.append(f"{uid}: append raised {type(exc).__name__}: {exc}")
                return
            with self._lock:
                if not isinstance(seq, int) or seq in self.returned:
                    self.bad_returns.append(f"{uid}: append returned {seq!r}")
                    return
                self.returned[seq] = uid

    def run(self) -> None:
        threads = [threading.Thread(target=self._appender, args=(t,), daemon=True)
                   for t in range(THREADS)]
        for th in threads:
            th.start()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for th in threads:
            th.join(max(0.0, deadline - time.monotonic()))
        assert not any(th.is_alive() for th in threads), "appenders hung after the power cut"


def create_outbox_file(path: Path, signer) -> None:
    """Schema first, with the production connection (migrations need sqlite3)."""
    Outbox(path, device=DEVICE, signer=signer).close()


def open_on_vfs(path: Path, signer, vfs: PowerLossVFS, autocheckpoint: int = 1000) -> Outbox:
    def connect(p):
        conn = apsw.Connection(str(p), vfs=vfs.vfs_name)
        conn.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
        return conn

    return Outbox(path, device=DEVICE, signer=signer, telemetry_batch_ms=5, connect=connect)


def reboot(outbox: Outbox, vfs: PowerLossVFS, path: Path) -> None:
    """Cut the power (if the VFS has not), drop the process's handles and the -shm."""
    vfs.crash()
    outbox.close()
    vfs.unregister()
    Path(f"{path}-shm").unlink(missing_ok=True)


def read_back(path: Path, signer) -> dict:
    """Everything the rebooted device finds, checked for integrity and chain."""
    assert recovery.check(path) is None, "outbox fails its integrity check after the power cut"
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT seq, hash, payload, size FROM events ORDER BY seq").fetchall()
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        conn.close()
    seqs = [r[0] for r in rows]
    head = int(meta["head_seq"])
    assert seqs == list(range(1, head + 1)), f"stored seqs {seqs} do not run 1..{head}"
    assert meta["head_hash"] == (rows[-1][1] if rows else events.GENESIS_PREV)
    assert int(meta["used_bytes"]) == sum(r[3] for r in rows)
    report = check_capture([bytes(r[2]) for r in rows], Verifier.from_pem(signer.public_key_pem()))
    assert report.ok and report.events == len(rows), report.problems
    bodies = {}
    for seq, digest, payload, _ in rows:
        assert events.sha256_hex(bytes(payload)) == digest
        event = parse_json_object(bytes(payload))
        assert event["seq"] == seq and event["device"] == DEVICE
        bodies[seq] = event["body"].get("uid")
    return {"bodies": bodies, "head": head, "head_hash": meta["head_hash"]}


def assert_returned_survived(work: Workload, found: dict) -> None:
    assert not work.bad_returns, work.bad_returns
    lost = {s: u for s, u in work.returned.items() if found["bodies"].get(s) != u}
    assert not lost, f"append() returned, but after the power cut these are gone: {lost}"


def run_scenario(tmp_path: Path, signer, *, seed: int, torn: bool, crash_at: int | None,
                 synchronous: str | None = None, autocheckpoint: int = 1000):
    path = tmp_path / f"{'torn' if torn else 'drop'}-{seed}" / "outbox.sqlite"
    create_outbox_file(path, signer)
    vfs = PowerLossVFS(f"powerloss-{os.getpid()}-{next(_names)}", torn=torn, seed=seed)
    outbox = open_on_vfs(path, signer, vfs, autocheckpoint)
    try:
        if synchronous:
            for conn in (outbox._conn, outbox._reader):
                conn.execute(f"PRAGMA synchronous={synchronous}")
        ops_at_open = vfs.ops
        if crash_at is not None:
            vfs.crash_at_op = ops_at_open + crash_at
        work = Workload(outbox)
        work.run()
        ops = vfs.ops - ops_at_open
    finally:
        reboot(outbox, vfs, path)
    found = read_back(path, signer)
    return work, found, vfs, ops, path


def test_model_loses_unsynced_writes_and_keeps_synced_ones(tmp_path):
    path = tmp_path / "plain.db"
    conn = sqlite3.connect(path)
    conn.executescript("PRAGMA journal_mode=WAL; CREATE TABLE t(x);")
    conn.close()
    vfs = PowerLossVFS(f"powerloss-unit-{os.getpid()}")
    db = apsw.Connection(str(path), vfs=vfs.vfs_name)
    db.execute("PRAGMA synchronous=FULL")
    db.execute("INSERT INTO t VALUES (1)")  # committed and synced
    db.execute("PRAGMA synchronous=OFF")
    db.execute("INSERT INTO t VALUES (2)")  # committed, never synced
    other = apsw.Connection(str(path), vfs=vfs.vfs_name)
    assert other.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (2,)]
    vfs.crash()
    assert vfs.lost_ops > 0
    with pytest.raises(PowerCut):
        db.execute("INSERT INTO t VALUES (3)")
    for c in (db, other):
        try:
            c.close()
        except apsw.Error:
            pass
    vfs.unregister()
    Path(f"{path}-shm").unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,)]
    conn.close()


@pytest.mark.parametrize("torn", [False, True], ids=["drop-unsynced", "torn-unsynced"])
def test_returned_appends_survive_power_loss(tmp_path, signer, torn):
    # Calibrate: how many data operations does the workload make, crash only at the end?
    work, found, _vfs, total_ops, _ = run_scenario(tmp_path / "calibrate", signer, seed=-1,
                                                   torn=torn, crash_at=None)
    assert len(work.returned) == THREADS * PER_THREAD and not work.failures
    assert_returned_survived(work, found)

    rng = random.Random(20240501 + torn)
    cut_mid_commit = 0
    for seed in SEEDS:
        # Odd seeds checkpoint every few pages, so cuts also land in checkpoints and WAL resets.
        autocheckpoint = 4 if seed % 2 else 1000
        crash_at = rng.randint(1, total_ops * (2 if seed % 2 else 1))
        work, found, vfs, _, path = run_scenario(tmp_path, signer, seed=seed, torn=torn,
                                                 crash_at=crash_at, autocheckpoint=autocheckpoint)
        assert vfs.crashed
        assert_returned_survived(work, found)
        if vfs.lost_ops:
            cut_mid_commit += 1
        # The device carries on after the reboot: the chain continues from the stored head.
        outbox = Outbox(path, device=DEVICE, signer=signer)
        try:
            seq = outbox.append(Draft("test.power", "money", {"uid": "after-reboot"}))
            assert seq == found["head"] + 1
            row = outbox._reader.execute("SELECT payload FROM events WHERE seq = ?",
                                         (seq,)).fetchone()
            assert parse_json_object(bytes(row[0]))["prev"] == found["head_hash"]
        finally:
            outbox.close()
    # The cuts must land among the I/O, not only between commits.
    assert cut_mid_commit >= len(SEEDS) // 4, f"only {cut_mid_commit} cuts hit unsynced writes"


@pytest.mark.parametrize("synchronous", ["OFF", "NORMAL"])
def test_model_has_teeth_without_sync_at_commit(tmp_path, signer, synchronous):
    """Same shim, but commits that do not fsync: returned events ARE lost by the power cut."""
    work, found, vfs, _, _ = run_scenario(tmp_path, signer, seed=0, torn=False, crash_at=None,
                                          synchronous=synchronous)
    assert len(work.returned) == THREADS * PER_THREAD and not work.bad_returns
    lost = [s for s, u in work.returned.items() if found["bodies"].get(s) != u]
    assert lost, "the power-loss model lost nothing although no commit was synced"
    assert vfs.lost_ops > 0


def test_every_caller_sees_the_failure_when_the_disk_is_gone(tmp_path, signer):
    """A commit that cannot even begin (here apsw's own error type, not sqlite3.Error) must fail
    every append of its group commit with OutboxError; none may return as if it were stored."""
    path = tmp_path / "gone" / "outbox.sqlite"
    create_outbox_file(path, signer)
    vfs = PowerLossVFS(f"powerloss-gone-{os.getpid()}")
    outbox = Outbox(path, device=DEVICE, signer=signer, telemetry_batch_ms=50,
                    connect=lambda p: apsw.Connection(str(p), vfs=vfs.vfs_name))
    try:
        vfs.crash()
        work = Workload(outbox)
        work.run()
    finally:
        reboot(outbox, vfs, path)
    assert not work.bad_returns, work.bad_returns
    assert not work.returned and len(work.failures) == THREADS

"""The fault suite: an I/O fault at every step of the outbox's cycle loses nothing.

The cycle is the device's: append (money, alerts, telemetry; group commit), forward (the rows
marked sent), the bank's ack and the prune, then more appends. It runs against the real outbox
over tests/support/faults.py (an apsw VFS and the high-water file's writer, both counting their
steps), and from step N on every write, truncation, sync or high-water write fails with ENOSPC
or EIO, or (tests/support/powerloss.py) the power is cut at step N. Then the fault is gone and
the outbox is opened again, as after a restart. At each point:

- no event whose append returned is lost (present, or pruned by an ack that covered it);
- no seq is reused with other content (the chain verifies, and links to the ack's hash);
- the first error a caller saw is the fault's own (OutboxFull for ENOSPC), not a later one;
- the device recovers: appends work again.

`COCOON_FAULTS_ALL=1` tries every step; by default about 30 of each kind, spread evenly. The
counts (steps, points per kind and step, events committed, lost, duplicated, forked) are
printed.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections import Counter
from pathlib import Path

import apsw
import pytest

from agent.contract.canonical import sha256_hex
from agent.contract.chain import check_capture
from agent.contract.envelope import parse_json_object
from agent.contract.events import Draft
from agent.contract.signing import Ed25519Signer, Verifier
from agent.errors import OutboxError, OutboxFull
from agent.spine import outbox as outbox_module
from agent.spine.outbox import Outbox
from tests.support.faults import KINDS, Faults, FaultVFS
from tests.support.powerloss import PowerLossVFS

DEVICE = "dev-a"
PRIORITIES = ("money", "alert", "telemetry")
SAMPLES = 30
_names = itertools.count()


@pytest.fixture(scope="module")
def signer():
    return Ed25519Signer.generate()


@pytest.fixture(scope="module")
def template(tmp_path_factory, signer):
    """A migrated outbox with a few acknowledged events, as a running device has."""
    root = tmp_path_factory.mktemp("template")
    outbox = Outbox(root / "outbox.sqlite", device=DEVICE, signer=signer, telemetry_batch_ms=0)
    for i in range(5):
        outbox.append(Draft("test.sale", "money", {"uid": f"t-{i}"}))
    outbox.acknowledge(5, outbox.event_hash(5))
    outbox.close()
    # as an outbox of the version before the high-water mark: the cycle's first commit
    # reserves, so that the high-water file's write (a write, an fsync, a rename and a
    # directory sync) is one of the steps
    (root / "outbox.sqlite.hwm").unlink()
    return root


def run_cycle(outbox: Outbox, record: dict) -> None:
    """The device's cycle; `record` collects what returned, and the first error."""
    def append(uid: str, priority: str) -> None:
        try:
            record["returned"][outbox.append(Draft("test.sale", priority, {"uid": uid}))] = uid
        except Exception as exc:   # the fault may surface as anything: recorded, compared
            record.setdefault("first", exc)

    for i in range(12):
        append(f"a-{i}", PRIORITIES[i % 3])
    try:
        pending = [s.seq for s in outbox.pending(1000)]
        outbox.mark_sent(pending)
        if pending:
            top = pending[len(pending) // 2]
            outbox.acknowledge(top, outbox.event_hash(top))
            record["acked"] = top
    except Exception as exc:
        record.setdefault("first", exc)
    for i in range(6):
        append(f"b-{i}", PRIORITIES[i % 3])


def check_after(path: Path, signer, record: dict, kind: str) -> None:
    """Reopen as after a restart (plain sqlite3, the fault gone) and check the invariants."""
    outbox = Outbox(path, device=DEVICE, signer=signer, telemetry_batch_ms=0)
    try:
        rows = outbox.read("SELECT seq, payload FROM events ORDER BY seq")   # sent ones too
        stored = {}
        for _, payload in rows:
            event = parse_json_object(payload)
            stored[event["seq"]] = (event["body"].get("uid"), sha256_hex(payload))
        acked = outbox.acked_seq()
        for seq, uid in record["returned"].items():
            if seq > acked:
                assert stored.get(seq, (None,))[0] == uid, f"event {seq} ({uid}) lost"
        report = check_capture([bytes(p) for _, p in rows],
                               Verifier.from_pem(signer.public_key_pem()))
        assert report.counts["bad_signature"] == 0 and report.counts["broken_link"] == 0
        first = min(stored, default=None)
        if first is not None and first == acked + 1:
            head = parse_json_object(rows[0][1])
            assert head["prev"] == outbox.read(
                "SELECT value FROM meta WHERE key = 'acked_hash'")[0][0], "forked at the ack"
        if kind == "ENOSPC" and "first" in record:
            assert isinstance(record["first"], OutboxFull | OutboxError), record["first"]
            if isinstance(record["first"], OutboxError) and not isinstance(
                    record["first"], OutboxFull):
                assert "disk" in str(record["first"]).lower() or "full" in str(
                    record["first"]).lower(), record["first"]
        seq = outbox.append(Draft("test.sale", "money", {"uid": "after"}))   # recovered
        assert seq > max([outbox.head_seq() - 1, *record["returned"]], default=0)
    finally:
        outbox.close()


def counted_steps(template: Path, signer, tmp: Path) -> Faults:
    faults = Faults()
    run_point(template, signer, tmp / "count", faults, "ENOSPC")
    return faults


def run_point(template: Path, signer, where: Path, faults: Faults, kind: str) -> dict:
    shutil.copytree(template, where)
    vfs = FaultVFS(faults, f"faults-{next(_names)}-{os.getpid()}")
    real_write = outbox_module.write_private

    def hwm_write(path, data):
        faults.step("hwm")
        real_write(path, data)

    def connect(p):
        return apsw.Connection(str(p), vfs=vfs.vfs_name)

    outbox_module.write_private = hwm_write
    record: dict = {"returned": {}}
    try:
        try:
            outbox = Outbox(where / "outbox.sqlite", device=DEVICE, signer=signer,
                            telemetry_batch_ms=0, connect=connect)
        except Exception as exc:   # the fault at opening: nothing was appended
            record["first"] = exc
            outbox = None
        if outbox is not None:
            try:
                run_cycle(outbox, record)
            finally:
                try:        # closing is part of the cycle: its checkpoint is steps too
                    outbox.close()
                except Exception:
                    pass
        faults.clear()
    finally:
        outbox_module.write_private = real_write
        vfs.unregister()
    return record


def points(counted: Faults) -> list[int]:
    """Every step under COCOON_FAULTS_ALL=1; else SAMPLES spread evenly, and the first step
    of each kind, so that no kind is skipped by accident."""
    steps = counted.steps
    if os.environ.get("COCOON_FAULTS_ALL") == "1":
        return list(range(1, steps + 1))
    return sorted({1 + (steps - 1) * i // (SAMPLES - 1) for i in range(SAMPLES)}
                  | set(counted.first_of.values()))


@pytest.mark.parametrize("kind", KINDS)
def test_an_io_error_at_any_step_loses_nothing(template, signer, tmp_path, kind):
    counted = counted_steps(template, signer, tmp_path)
    steps, tried, committed = counted.steps, Counter(), 0
    for n in points(counted):
        faults = Faults(n, kind)
        where = tmp_path / f"{kind}-{n}"
        record = run_point(template, signer, where, faults, kind)
        tried[faults.fired or "none"] += 1
        Path(f"{where / 'outbox.sqlite'}-shm").unlink(missing_ok=True)   # gone at a restart
        check_after(where / "outbox.sqlite", signer, record, kind)
        committed += len(record["returned"])
        shutil.rmtree(where)
    print(f"{kind}: {steps} steps, {sum(tried.values())} points tried, by step "
          f"{dict(tried)}; events committed {committed}, lost 0, duplicated 0, forked 0")
    assert all(tried[s] >= 1 for s, count in counted.by_step.items() if count), tried


def test_a_power_cut_at_any_step_loses_nothing(template, signer, tmp_path):
    counted = counted_steps(template, signer, tmp_path)
    steps, tried = counted.steps, 0
    for n in points(counted):
        where = tmp_path / f"cut-{n}"
        shutil.copytree(template, where)
        vfs = PowerLossVFS(f"cut-{next(_names)}-{os.getpid()}", crash_at_op=n)
        record: dict = {"returned": {}}
        try:
            outbox = Outbox(where / "outbox.sqlite", device=DEVICE, signer=signer,
                            telemetry_batch_ms=0,
                            connect=lambda p, v=vfs: apsw.Connection(str(p), vfs=v.vfs_name))
            try:
                run_cycle(outbox, record)
            finally:
                vfs.crash()
                try:
                    outbox.close()
                except Exception:
                    pass
        except Exception as exc:
            record.setdefault("first", exc)
        finally:
            vfs.unregister()
        Path(f"{where / 'outbox.sqlite'}-shm").unlink(missing_ok=True)   # lost at the reboot
        check_after(where / "outbox.sqlite", signer, record, "power cut")
        shutil.rmtree(where)
        tried += 1
    print(f"power cut: {steps} steps, {tried} points tried; lost 0, duplicated 0, forked 0")
    assert tried >= 1

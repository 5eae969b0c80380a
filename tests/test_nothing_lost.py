"""Nothing lost, nothing doubled: the cases of the nothing-lost issue that need no broker.

- outbox files are private to the service user (they hold farmer ids and amounts);
- `emit --idempotency-key` records a retried event once;
- replay protection does not follow the device's wall clock;
- `emit` never quarantines an outbox that a running agent holds.
"""

import json
import os
import sqlite3
import stat
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest

from agent.contract.commands import BACKEND, BANK, make_command
from agent.contract.events import Draft
from agent.contract.signing import Ed25519Signer, Verifier
from agent.spine.dispatcher import Dispatcher
from tests.support.running import BIN, add_device, outbox_events
from tests.support.running import cli as run_cli

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=timezone.utc)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- private files --------------------------------------------------------------------------

def test_the_outbox_and_its_wal_are_private(make_outbox, tmp_path):
    outbox = make_outbox()
    outbox.append(Draft("test.sale", "money", {"farmer": "F-1", "amount": "12.00"}))
    for suffix in ("", "-wal", "-shm"):
        assert mode(f"{outbox.path}{suffix}") == 0o600, suffix


def test_an_outbox_left_readable_by_an_older_version_is_made_private(make_outbox, tmp_path):
    outbox = make_outbox("old.sqlite")
    outbox.append(Draft("test.sale", "money", {"farmer": "F-1"}))
    outbox.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{outbox.path}{suffix}"):
            os.chmod(f"{outbox.path}{suffix}", 0o644)
    again = make_outbox("old.sqlite")
    again.append(Draft("test.sale", "money", {"farmer": "F-2"}))
    for suffix in ("", "-wal", "-shm"):
        assert mode(f"{again.path}{suffix}") == 0o600, suffix


# -- emit is idempotent ---------------------------------------------------------------------

def test_emit_with_an_idempotency_key_records_once(site):
    config = add_device(site, "dev-a")
    args = ["--config", config, "emit", "--type", "test.sale", "--priority", "money",
            "--body", json.dumps({"lot": "L-1"}), "--idempotency-key", "sale-L-1"]
    first = run_cli("cocoon-agent", *args)
    assert first.returncode == 0, first.stderr
    again = run_cli("cocoon-agent", *args)            # the caller's retry after a crash
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    other = run_cli("cocoon-agent", *args[:-1], "sale-L-2")
    assert int(other.stdout) > int(first.stdout)
    sales = [e for e in outbox_events(site, "dev-a") if e["type"] == "test.sale"]
    assert [e["seq"] for e in sales] == [int(first.stdout), int(other.stdout)]
    body = json.loads(sales[0]["payload"])["body"]
    assert body == {"lot": "L-1"}                      # the key is the caller's, not the bank's


# -- replay protection ----------------------------------------------------------------------

def test_a_replay_is_refused_after_the_clock_jumps_forward_and_back(make_outbox):
    """fake-hwclock on a Pi without an RTC, or a wrong NTP answer: the device's clock runs a
    day ahead for a while, then comes back. A command seen before must still be refused."""
    bank = Ed25519Signer.generate()
    outbox = make_outbox()
    clock = [T0]
    disp = Dispatcher("dev-a", outbox, {BANK: Verifier.from_pem(bank.public_key_pem()),
                                        BACKEND: None}, now=lambda: clock[0])
    disp.register("payment.confirmed", lambda cmd: None)
    first = make_command("dev-a", "payment.confirmed", {"purchase": "p-1"}, bank, now=T0)
    assert disp.handle(json.dumps(first).encode()) is not None
    clock[0] = T0 + timedelta(days=1)                  # the clock jumps a day ahead
    later = make_command("dev-a", "payment.confirmed", {"purchase": "p-2"}, bank,
                         now=T0 + timedelta(minutes=1), expires_in_s=3 * 86400)
    assert disp.handle(json.dumps(later).encode()) is not None
    clock[0] = T0 + timedelta(minutes=2)               # and comes back
    assert disp.handle(json.dumps(first).encode()) is None
    refused = [json.loads(s.payload)["body"] for s in outbox.pending(100)
               if json.loads(s.payload)["type"] == "command.refused"]
    assert refused and "replay" in refused[-1]["reason"]


def test_a_command_expired_by_the_banks_own_clock_is_refused(make_outbox):
    """With the device's clock behind, a command the bank's later commands show to have
    expired is refused, whatever the device's clock says."""
    bank = Ed25519Signer.generate()
    outbox = make_outbox()
    disp = Dispatcher("dev-a", outbox, {BANK: Verifier.from_pem(bank.public_key_pem()),
                                        BACKEND: None}, now=lambda: T0)
    disp.register("payment.confirmed", lambda cmd: None)
    late = make_command("dev-a", "payment.confirmed", {"purchase": "p-9"}, bank,
                        now=T0 + timedelta(hours=3), expires_in_s=60)
    old = make_command("dev-a", "payment.confirmed", {"purchase": "p-0"}, bank,
                       now=T0 - timedelta(minutes=1), expires_in_s=3600)
    disp_late = Dispatcher("dev-a", outbox, disp.verifiers, disp.handlers,
                           now=lambda: T0 + timedelta(hours=3))
    assert disp_late.handle(json.dumps(late).encode()) is not None
    assert disp.handle(json.dumps(old).encode()) is None   # expired at T0+59 min, bank time


# -- emit and a running agent ---------------------------------------------------------------

def test_emit_never_quarantines_the_outbox_of_a_running_agent(site):
    config = add_device(site, "dev-a", heartbeat_s=60)
    agent = subprocess.Popen([str(BIN / "cocoon-agent"), "--config", str(config), "run"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    data = config.parent / "data"
    try:
        deadline = time.monotonic() + 30

        def started() -> bool:
            try:
                return any(e["type"] == "agent.started" for e in outbox_events(site, "dev-a"))
            except sqlite3.Error:
                return False
        while not started():                            # the agent is up and running
            assert time.monotonic() < deadline and agent.poll() is None, agent.stderr.read()
            time.sleep(0.05)
        conn = sqlite3.connect(data / "outbox.sqlite")       # everything into the main file
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        size = (data / "outbox.sqlite").stat().st_size
        with open(data / "outbox.sqlite", "r+b") as db:      # then garble all but its header
            db.seek(4096)
            db.write(b"\xff" * (size - 4096))
        done = run_cli("cocoon-agent", "--config", config, "emit", "--type", "test.manual",
                       "--priority", "alert", "--body", "{}")
        assert done.returncode != 0, (agent.poll(), done.stderr)
        assert "running agent" in done.stderr and "quarantine" in done.stderr, done.stderr
        assert not list(data.glob("outbox.sqlite.corrupt-*"))   # nothing moved under it
        assert agent.poll() is None
    finally:
        agent.terminate()
        agent.wait(30)


@pytest.fixture(autouse=True)
def _no_leftover_umask():
    old = os.umask(0o022)                           # a service's usual umask
    yield
    os.umask(old)


# -- a sale the outbox cannot vouch for ---------------------------------------------------

def test_the_clerk_is_told_a_sale_may_have_been_recorded(tmp_path, signer):
    """The disk fails while the sale's commit is made durable (its sync): the outbox cannot
    tell whether the sale is stored. The clerk is told, by the catalogue's key, to check
    today's sales before selling again; the station does not go back to confirming, where a
    second Confirm could record the sale twice."""
    import apsw

    from agent.spine.outbox import Outbox
    from agent.station import purchase as p
    from agent.station.effects import EffectRunner
    from drivers.printer import open_printer
    from tests.support.faults import Faults, FaultVFS
    from tests.test_station import CLERK, FARMER, GOOD, PRICED, Clock

    path = tmp_path / "outbox.sqlite"
    Outbox(path, device="station-01", signer=signer).close()         # migrated
    faults = Faults(only="sync")
    vfs = FaultVFS(faults, f"uncertain-{os.getpid()}")
    outbox = Outbox(path, device="station-01", signer=signer, telemetry_batch_ms=0,
                    connect=lambda p_: apsw.Connection(str(p_), vfs=vfs.vfs_name))
    try:
        station = EffectRunner("station-01", outbox, write_card=lambda farmer, sale: None,
                               printer=open_printer("dummy://"), clock=Clock())
        for event in (p.StaffCard(CLERK), p.ScaleUpdate(GOOD), p.FarmerCard(FARMER),
                      p.Graded(PRICED)):
            station.handle(event)
        faults.fail_at, faults.kind = faults.steps + 1, "EIO"   # the sale's commit sync
        station.handle(p.Confirm())
        assert faults.fired == "sync"
        assert station.message_key == "sale_may_be_recorded"
        assert station.flow.phase is p.Phase.READY
    finally:
        outbox.close()
        vfs.unregister()
    again = Outbox(path, device="station-01", signer=signer)        # after a restart
    try:
        assert len(again.read("SELECT seq FROM sales")) <= 1        # once, or not at all
    finally:
        again.close()


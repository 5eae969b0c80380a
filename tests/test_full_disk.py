"""A full disk is survived: the agent starts, forwards and prunes, money is refused with a clear
`OutboxFull`, one `outbox.full` alert reaches the bank, and selling resumes once there is room.

The device's data directory is a small tmpfs, filled to the last byte: a real full disk, met by
the real agent process, broker and ingest.
"""

import json
import os
import shutil
import signal
import subprocess

import pytest

from agent.config import load_config
from agent.contract.events import Draft
from agent.errors import OutboxFull
from agent.ops.service import open_outbox
from tests.support.running import (
    BIN,
    add_device,
    append_offline,
    ingest_device,
    ingest_store_rows,
    outbox_events,
)
from tests.support.running import cli as run_cli
from tests.support.waiting import wait_for

DEV = "dev-a"


@pytest.fixture
def small_disk(site):
    """The device's data directory on a 6 MiB tmpfs (its key carried over)."""
    config = add_device(site, DEV, heartbeat_s=30, outbox={"capacity_bytes": 64 * 1024 * 1024})
    data = config.parent / "data"
    key = (data / "device-signing.key").read_bytes()
    shutil.rmtree(data)
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", str(data)],
                   check=True)
    try:
        (data / "device-signing.key").write_bytes(key)
        os.chmod(data / "device-signing.key", 0o600)
        yield config, data
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


def fill(data) -> None:
    """Write a filler file until the disk refuses another byte."""
    with open(data / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            pass
        try:
            while True:
                fh.write(b"\0" * 512)
                fh.flush()
        except OSError:
            pass


def test_the_agent_starts_forwards_and_prunes_on_a_full_disk(site, services, small_disk):
    config, data = small_disk
    backlog = append_offline(site, DEV, [Draft("purchase.recorded", "money",
                                               {"marker": f"m-{i}", "pad": "x" * 400})
                                         for i in range(300)])
    fill(data)
    services.ingest(site.ingest_config).wait_connected()
    agent = subprocess.Popen([str(BIN / "cocoon-agent"), "--config", str(config), "run"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        # the backlog that would free the disk is sent, acknowledged and pruned; the agent
        # lives on
        wait_for(lambda: ingest_device(site, DEV)["watermark"] >= backlog[-1]
                 or agent.poll() is not None, 60, what="the backlog at the bank")
        assert agent.poll() is None, agent.stderr.read()[-3000:]
        wait_for(lambda: outbox_events(site, DEV) == [] or agent.poll() is not None, 30,
                 what="the backlog pruned")
        assert agent.poll() is None

        # what the prune freed is used up: money is then refused, with what to do
        outbox, _ = open_outbox(load_config(config))
        try:
            with pytest.raises(OutboxFull) as refused:
                for i in range(10_000):
                    outbox.append(Draft("purchase.recorded", "money",
                                        {"marker": f"fill-{i}", "pad": "y" * 2000}))
            assert "disk is full" in str(refused.value) and "Free space" in str(refused.value)
            head = outbox.head_seq()
            with pytest.raises(OutboxFull):
                outbox.append(Draft("purchase.recorded", "money", {"marker": "again"}))
            done = run_cli("cocoon-agent", "--config", config, "emit", "--type",
                           "purchase.recorded", "--priority", "money", "--body", "{}")
            assert done.returncode == 1 and "disk is full" in done.stderr, done.stderr
        finally:
            outbox.close()
        # one outbox.full alert, recorded in the reserve's room, reaches the bank
        wait_for(lambda: ingest_device(site, DEV)["watermark"] >= head
                 or agent.poll() is not None, 60, what="everything up to the refusal at the bank")
        alerts = [r for r in ingest_store_rows(site, DEV) if r["type"] == "outbox.full"]
        assert len(alerts) == 1, [r["type"] for r in ingest_store_rows(site, DEV)][-10:]
        assert "disk full" in json.loads(alerts[0]["payload"])["body"]["message"]

        # room again: selling resumes
        (data / "filler").unlink()
        done = run_cli("cocoon-agent", "--config", config, "emit", "--type",
                       "purchase.recorded", "--priority", "money", "--body", '{"marker": "ok"}')
        assert done.returncode == 0, done.stderr
        assert agent.poll() is None
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            _, err = agent.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
            _, err = agent.communicate()
        print(err[-4000:])
    # the first error is the one reported, and no process crash-looped
    assert "cannot rollback" not in err, err[-3000:]
    assert "link process exited" not in err, err[-3000:]

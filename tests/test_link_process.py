"""The MQTT link in its own process (agent.link.process, agent.link.child), against the real
broker and ingest: a killed link process is started again and nothing is lost, a stuck one
stops the watchdog's sign of progress, the link process leaves when the agent is gone, and the
in-thread link ([mqtt] link = "thread") still does the same job."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict

import pytest

from agent.config import load_config
from agent.contract.events import Draft
from agent.contract.signing import Ed25519Signer
from agent.link.mqtt import LinkSettings
from agent.link.process import LinkProcess, _package_root
from agent.link.uplink import Uplink
from tests.support.running import add_device
from tests.support.waiting import wait_for

DEV = "station-01"


def deliver(agent, n: int, tag: str) -> int:
    seqs = [agent.outbox.append(Draft("purchase.recorded", "money", {"marker": f"{tag}-{i}"}))
            for i in range(n)]
    wait_for(lambda: agent.outbox.acked_seq() >= max(seqs) and agent.unacked() == 0, 20,
             what=f"{tag}: ack of seq {max(seqs)} and an empty outbox")
    return max(seqs)


def test_the_link_runs_in_its_own_process_by_default(site, services):
    config = add_device(site, DEV)
    services.ingest(site.ingest_config).wait_connected()
    agent = services.agent(config)
    agent.wait_connected()
    assert isinstance(agent.link, LinkProcess)
    pid = agent.link.pid
    assert pid and pid != os.getpid()
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        assert b"agent.link.child" in fh.read()
    deliver(agent, 10, "own-process")
    wait_for(lambda: agent.uplink.published >= 10 and agent.uplink.pubacked >= 10, 5,
             what="the link process's counters")


def test_a_killed_link_process_is_started_again_and_nothing_is_lost(site, services):
    config = add_device(site, DEV)
    services.ingest(site.ingest_config).wait_connected()
    agent = services.agent(config)
    agent.wait_connected()
    deliver(agent, 20, "before")
    wait_for(lambda: sum(agent.agent.publish_counts()["latency_counts"]) >= 20, 5,
             what="the PUBACK latencies reported")
    published, counts = agent.uplink.published, agent.agent.publish_counts()
    assert counts["published_bytes"] > 0

    first = agent.link.pid
    os.kill(first, signal.SIGKILL)  # the agent started it; a crash in paho looks like this
    # Events recorded while there is no link wait in the outbox.
    during = [agent.outbox.append(Draft("purchase.recorded", "money", {"marker": f"gap-{i}"}))
              for i in range(5)]
    wait_for(lambda: agent.link.pid not in (None, first) and agent.link.status.connected, 15,
             what="a new link process, connected")
    assert agent.link.status.connects >= 2
    wait_for(lambda: agent.outbox.acked_seq() >= max(during), 20, what="the gap delivered")
    deliver(agent, 10, "after")
    # Counters count on across the restart (a Prometheus counter must never go back); the
    # link process reports them every tenth of a second.
    wait_for(lambda: agent.uplink.published >= published + 15, 5, what="the counters")
    after = agent.agent.publish_counts()
    assert after["published_bytes"] > counts["published_bytes"]
    assert all(a >= b for a, b in zip(after["latency_counts"], counts["latency_counts"],
                                      strict=True))


def test_a_stuck_link_process_stops_the_sign_of_progress(site, services):
    config = add_device(site, DEV)
    services.ingest(site.ingest_config).wait_connected()
    agent = services.agent(config)
    agent.wait_connected()
    loops = agent.link.loops
    wait_for(lambda: agent.link.loops > loops, 5, what="the link's loop to turn")
    pid = agent.link.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(0.5)  # reports already in the pipe are read
        frozen = agent.link.loops
        time.sleep(1.5)
        assert agent.link.loops == frozen, "the watchdog would be fed by a stuck link"
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: agent.link.loops > frozen, 5, what="progress after the link resumes")
    deliver(agent, 3, "resumed")


@contextlib.contextmanager
def spawn_child(site, config_path):
    """A link process started by hand, as LinkProcess starts it, connected; killed at the end
    if it is still running."""
    cfg = load_config(config_path)
    link = LinkProcess(LinkSettings.from_config(cfg.device.id, cfg.mqtt), device=cfg.device.id,
                       outbox_path=cfg.outbox_path,
                       ingest_public_key_file=cfg.keys.ingest_public_key_file,
                       window=cfg.mqtt.inflight, ack_timeout_s=cfg.mqtt.ack_timeout_s)
    env = {**os.environ, "PYTHONPATH": _package_root()}
    proc = subprocess.Popen([sys.executable, "-m", "agent.link.child"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    proc.stdin.write((json.dumps(link._spec) + "\n").encode())
    proc.stdin.flush()
    try:
        read_messages(proc, "connected")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def read_messages(proc, until: str, timeout: float = 15.0) -> list[dict]:
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(json.loads(line))
        if seen[-1]["t"] == until or (until == "connected" and seen[-1].get("connected")):
            return seen
    raise AssertionError(f"no {until!r} from the link process; got {seen[-3:]}")


@pytest.fixture
def outbox_ready(site):
    """A device whose outbox exists (the agent creates it before starting the link)."""
    from agent.ops.service import open_outbox

    config = add_device(site, DEV)
    outbox, _ = open_outbox(load_config(config))
    outbox.append(Draft("test.event", "alert", {"n": 1}))
    outbox.close()
    return config


def test_the_link_process_leaves_at_once_when_the_agent_is_gone(site, outbox_ready):
    with spawn_child(site, outbox_ready) as proc:
        proc.stdin.close()  # what the kernel does when the agent dies
        assert proc.wait(timeout=5) == 0


def test_an_orderly_stop_reports_its_last_figures(site, outbox_ready):
    with spawn_child(site, outbox_ready) as proc:
        proc.stdin.write(b"stop\n")
        proc.stdin.flush()
        bye = read_messages(proc, "bye")[-1]
        assert bye["peak_rss_kib"] > 0 and bye["write_bytes"] >= 0
        assert proc.wait(timeout=10) == 0


def test_the_link_in_a_thread_still_delivers(site, services):
    config = add_device(site, DEV, mqtt={"link": "thread"})
    services.ingest(site.ingest_config).wait_connected()
    agent = services.agent(config)
    agent.wait_connected()
    assert isinstance(agent.uplink, Uplink) and agent.link.__class__.__name__ == "MqttLink"
    deliver(agent, 10, "thread")
    assert agent.agent.publish_counts()["published_bytes"] > 0


def test_link_mode_is_checked(tmp_path, site):
    config = add_device(site, DEV, mqtt={"link": "fork"})
    with pytest.raises(Exception, match=r"\[mqtt\] link.*process, thread"):
        load_config(config)


def test_counters_carry_over_a_restarted_child(tmp_path):
    key = tmp_path / "ingest.pem"
    key.write_bytes(Ed25519Signer.generate().public_key_pem())
    link = LinkProcess(LinkSettings("d", "127.0.0.1", 1, "ca", "c", "k"), device="d",
                       outbox_path="o", ingest_public_key_file=key, window=4, ack_timeout_s=1)
    base = {"connected": True, "auth_failed": False, "last_error": "", "connects": 1,
            "refused_publishes": 0, "acked_seq": 5, "rejected_acks": 0, "stale_acks": 0,
            "latency_sum_s": 0.5, "published_bytes": 100}
    zeros = [0] * len(link.meter.latency_counts)
    link._apply_status({**base, "loops": 10, "published": 4, "pubacked": 4,
                        "latency_counts": [4, *zeros[1:]]})
    assert (link.uplink.published, link.loops, link.status.connects) == (4, 10, 1)
    link._last = {}  # a new child: its counters start again from zero
    link.status.connected = False
    link._apply_status({**base, "loops": 3, "published": 1, "pubacked": 1, "acked_seq": 2,
                        "published_bytes": 30, "latency_sum_s": 0.1,
                        "latency_counts": [1, *zeros[1:]]})
    assert link.uplink.published == 5 and link.uplink.pubacked == 5
    assert link.uplink.acked_seq == 5  # a watermark never goes back
    assert link.loops == 13 and link.status.connects == 2
    assert link.meter.published_bytes == 130 and link.meter.latency_counts[0] == 5
    assert asdict(link.meter)["latency_sum_s"] == pytest.approx(0.6)


def test_the_link_process_loads_neither_cryptography_nor_sqlite_utils():
    """Memory on a Pi is short: the link's process verifies acks through libsodium with the
    raw key and finds the outbox's schema up to date (about 20 MiB saved together)."""
    probe = ("import sys, agent.link.child; "
             "print(sorted({'cryptography', 'sqlite_utils', 'click'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": _package_root()}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_es256_ingest_key_reaches_the_link_process_as_its_file(tmp_path):
    from agent.contract.signing import ES256Signer
    from agent.link.child import _ingest_verifier
    from agent.link.process import _ingest_key

    ed, es = tmp_path / "ed.pem", tmp_path / "es.pem"
    ed_signer, es_signer = Ed25519Signer.generate(), ES256Signer.generate()
    ed.write_bytes(ed_signer.public_key_pem())
    es.write_bytes(es_signer.public_key_pem())
    assert set(_ingest_key(ed)) == {"raw", "kid"}
    assert _ingest_key(es) == {"file": str(es)}
    for signer, path in ((ed_signer, ed), (es_signer, es)):
        verifier = _ingest_verifier(json.loads(json.dumps(_ingest_key(path))))
        verifier.verify(signer.alg, signer.kid, b"ack", signer.sign(b"ack"))


def test_a_link_process_stuck_too_long_is_replaced(site, services):
    config = add_device(site, DEV)
    services.ingest(site.ingest_config).wait_connected()
    agent = services.agent(config, start=False)
    agent.link.stuck_after_s = 2.0
    agent.start()
    agent.wait_connected()
    stuck = agent.link.pid
    os.kill(stuck, signal.SIGSTOP)  # its loop stops; the agent kills it (SIGKILL works on it)
    wait_for(lambda: agent.link.pid not in (None, stuck) and agent.link.status.connected, 20,
             what="the stuck link process replaced")
    assert not os.path.exists(f"/proc/{stuck}"), "the stuck process was not reaped"
    deliver(agent, 3, "replaced")

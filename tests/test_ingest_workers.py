"""Several `cocoon-ingest run` processes on one shared subscription and one PostgreSQL database,
SIGKILLed at random moments while two devices forward thousands of events.

Real Mosquitto (TLS, `$share/ingest/cocoon/v1/+/events`), real agents (in threads of this
process) with a backlog and producers that keep appending, and real worker processes, each
with its own `[ingest] worker` name. A seeded-random worker is killed a seeded-random time after
it connected, then started again; with one worker there is no one else to take over. At the end
every event the devices recorded is stored once, each device's chain verifies end to end,
nothing was forked or parked, the watermark is each device's head, and every device saw its
acks only move forward. Two forgeries sent in the middle of the kills (a flipped bit; another
key at a stored seq) are refused, whichever worker gets them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomlkit

from agent.contract import events, topics
from agent.contract.chain import check_capture
from agent.contract.events import Draft
from agent.contract.signing import Ed25519Signer, Verifier
from tests.support.mqtt import mqtt_client
from tests.support.running import (
    BIN,
    add_device,
    append_offline,
    ingest_query,
    use_store_url,
)
from tests.support.waiting import wait_for
from tests.test_forgery import device_signer, flip_bit, raw_client

DEVICES = ("dev-a", "dev-b")
BACKLOG = 1200          # events each device holds before the workers start
KILLS = 16              # per run: 32 kill points over the two worker counts
SEED = 1609


class Worker:
    """One `cocoon-ingest run` process; its log in a file per start."""

    def __init__(self, config: Path, logs: Path, name: str):
        self.config, self.logs, self.name = config, logs, name
        self.starts = 0
        self.proc: subprocess.Popen | None = None
        self.log: Path | None = None

    def start(self) -> None:
        self.starts += 1
        self.log = self.logs / f"{self.name}-{self.starts:02d}.log"
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [str(BIN / "cocoon-ingest"), "--log-level", "info", "--config",
                 str(self.config), "run"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])

    def wait_connected(self, timeout: float = 20.0) -> None:
        def connected():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}):\n"
                                     f"{self.tail()}")
            return b"mqtt connected" in self.log.read_bytes()
        wait_for(connected, timeout, what=f"{self.name} connected", interval=0.01)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not stop on SIGTERM:\n{self.tail()}") \
                from None


def worker_config(site, name: str) -> Path:
    """The site's ingest configuration (with its [store] url) under another worker name."""
    raw = tomllib.loads(site.ingest_config.read_text())
    raw["ingest"]["worker"] = name
    path = site.ingest_config.with_name(f"ingest-{name}.toml")
    path.write_text(tomlkit.dumps(raw))
    return path


class AckWatcher:
    """Every ack the broker hands out on cocoon/v1/+/acks, in order, per device."""

    def __init__(self, site):
        pki = SimpleNamespace(ca=site.ca, clients={"ingest": site.ca.issue("ingest")})
        self.client = mqtt_client(pki, site.broker, "ingest")
        self.lock = threading.Lock()
        self.seen: dict[str, list[int]] = {d: [] for d in DEVICES}
        self.client.on_message = self._on_message
        self.client.subscribe(f"{topics.PREFIX}/+/acks", qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.seen.setdefault(topics.device_of(msg.topic), []).append(
                json.loads(msg.payload)["seq"])

    def last(self, device: str) -> int:
        with self.lock:
            return self.seen[device][-1] if self.seen[device] else 0

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def forgeries(site) -> list[bytes]:
    """A device's event with one bit flipped, and another key's event at a stored seq."""
    draft = Draft("purchase.recorded", "money", {"marker": "forged", "amount": "999.00"})
    genuine = events.encode(events.seal(draft, device=DEVICES[0], seq=10**9,
                                        prev=events.GENESIS_PREV,
                                        signer=device_signer(site, DEVICES[0])))
    impostor = events.encode(events.seal(draft, device=DEVICES[0], seq=5,
                                         prev=events.GENESIS_PREV,
                                         signer=Ed25519Signer.generate()))
    return [flip_bit(genuine, b"forged"), impostor]


def send_forgeries(site) -> None:
    """Send the forgeries until both are refused: a broker that has more messages queued for a
    worker than it keeps drops some (a device sends its own again; a forger has to)."""
    forged = forgeries(site)

    def refused() -> bool:
        for payload in forged:
            raw.publish(topics.events(DEVICES[0]), payload)
        seqs = {s for (s,) in ingest_query(site, "SELECT seq FROM rejections")}
        return seqs >= {5, 10**9}

    with raw_client(site, DEVICES[0]) as raw:
        wait_for(refused, 30, what="both forgeries refused", interval=0.3)


def produce(agent, device: str, stop: threading.Event, appended: list[int]) -> None:
    n = 0
    while not stop.is_set():
        appended.append(agent.outbox.append(Draft(
            "purchase.recorded", "money", {"marker": f"{device}-live-{n}", "amount": f"{n}.50"})))
        n += 1
        time.sleep(0.002)


@pytest.mark.parametrize("workers", [1, 3])
def test_workers_killed_at_random_store_every_event_once(site, services, postgres_url, tmp_path,
                                                         workers):
    use_store_url(site, postgres_url)
    agents_config = {d: add_device(site, d, heartbeat_s=3600) for d in DEVICES}
    for device in DEVICES:
        append_offline(site, device, [Draft("purchase.recorded", "money",
                                            {"marker": f"{device}-backlog-{i}"})
                                      for i in range(BACKLOG)])
    logs = tmp_path / "worker-logs"
    logs.mkdir()
    pool = [Worker(worker_config(site, f"w{i}"), logs, f"w{i}") for i in range(workers)]
    watcher = AckWatcher(site)
    rng = random.Random(SEED + workers)
    stop_producing = threading.Event()
    producers: list[threading.Thread] = []
    appended: dict[str, list[int]] = {d: [] for d in DEVICES}
    try:
        for w in pool:
            w.start()
        for w in pool:
            w.wait_connected()
        agents = {d: services.agent(agents_config[d]) for d in DEVICES}
        for device, agent in agents.items():
            producers.append(threading.Thread(target=produce, daemon=True, args=(
                agent, device, stop_producing, appended[device])))
            producers[-1].start()
        stored_during_kills = []
        for kill in range(KILLS):
            if kill == KILLS // 3:
                send_forgeries(site)
            victim = rng.choice(pool)
            time.sleep(rng.uniform(0.0, 0.6))
            victim.kill()
            stored_during_kills.append(ingest_query(site, "SELECT count(*) FROM events")[0][0])
            if workers == 1:
                time.sleep(rng.uniform(0.0, 0.3))        # nobody takes over meanwhile
            victim.start()
            victim.wait_connected()
        stop_producing.set()
        for p in producers:
            p.join(10)
        heads = {d: a.outbox.head_seq() for d, a in agents.items()}
        for device, agent in agents.items():
            wait_for(lambda a=agent, d=device: a.outbox.acked_seq() >= heads[d], 90,
                     what=f"{device} acknowledged up to its head")
        for device in DEVICES:
            wait_for(lambda d=device: watcher.last(d) >= heads[d], 10,
                     what=f"the ack of {device}'s head seen on the broker")
        for w in pool:
            assert w.stop() == 0, w.tail()
    finally:
        stop_producing.set()
        watcher.close()
        for w in pool:
            if w.proc is not None and w.proc.poll() is None:
                w.kill()

    # the kills came while events were being stored, not after
    assert len(set(stored_during_kills)) > KILLS // 2, stored_during_kills
    for device in DEVICES:
        rows = ingest_query(site, "SELECT seq, payload FROM events WHERE device = ? ORDER BY seq",
                            (device,))
        assert [s for s, _ in rows] == list(range(1, heads[device] + 1))
        assert set(appended[device]) <= {s for s, _ in rows}
        report = check_capture([bytes(p) for _, p in rows],
                               Verifier.from_file(site.device_public_key(device)))
        assert report.ok and report.events == heads[device], report.problems
        seen = watcher.seen[device]
        assert seen == sorted(seen), f"{device}'s acks went back: {seen}"
        assert ingest_query(site, "SELECT watermark FROM devices WHERE device = ?",
                            (device,)) == [(heads[device],)]
        assert agents[device].uplink.stale_acks == 0
    rejected = ingest_query(site, "SELECT device, seq, reason FROM rejections")
    assert {(d, seq) for d, seq, _ in rejected} == {(DEVICES[0], 5), (DEVICES[0], 10**9)}
    assert all("bad signature" in reason for _, _, reason in rejected), rejected
    assert ingest_query(site, "SELECT count(*) FROM forks") == [(0,)]
    assert ingest_query(site, "SELECT count(*) FROM parked") == [(0,)]
    print(f"{workers} worker(s): {KILLS} kills, heads {heads}, "
          f"{sum(len(s) for s in watcher.seen.values())} acks seen, "
          f"{sum(w.starts for w in pool)} starts")

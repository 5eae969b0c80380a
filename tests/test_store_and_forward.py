"""Store-and-forward end to end: agent outbox -> Mosquitto (TLS) -> ingest -> signed ack -> prune.

Every test builds its own Site (CA, broker, ingest, keys) under tmp_path and runs the agent and
the ingest in this process, in threads. Link faults are injected with tests.support.faultproxy.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from collections import Counter

import pytest

from agent.contract.chain import check_capture
from agent.contract.envelope import parse_json_object
from agent.contract.events import Draft
from agent.contract.signing import Verifier
from agent.demo.devpki import LocalCA
from agent.link.mqtt import LinkSettings, MqttLink
from tests.support.faultproxy import FaultProxy
from tests.support.running import (
    BIN,
    RunningAgent,
    add_device,
    append_offline,
    cli,
    ingest_alerts,
    ingest_device,
    ingest_store_payloads,
    ingest_store_rows,
    ingest_store_seqs,
)
from tests.support.waiting import wait_for

DEV = "station-01"


@pytest.fixture
def proxy(site):
    with FaultProxy(site.broker.host, site.broker.port) as p:
        yield p


def mixed_drafts(n: int, tag: str) -> list[Draft]:
    """n drafts cycling money, alert and telemetry, each with a unique marker."""
    kinds = [("purchase.recorded", "money"), ("tamper.detected", "alert"),
             ("scale.reading", "telemetry")]
    out = []
    for i in range(n):
        type_, priority = kinds[i % 3]
        out.append(Draft(type_, priority, {"marker": f"{tag}-{i}", "net_g": str(1000 + i)}))
    return out


def append_all(agent: RunningAgent, drafts: list[Draft]) -> list[int]:
    return [agent.outbox.append(d) for d in drafts]


def stored_markers(site, device=DEV) -> Counter:
    counts = Counter()
    for payload in ingest_store_payloads(site, device):
        marker = parse_json_object(payload)["body"].get("marker")
        if marker is not None:
            counts[marker] += 1
    return counts


def wait_delivered(agent: RunningAgent, upto: int, timeout: float = 20.0) -> None:
    """Until the ingest has acknowledged everything up to `upto` and the outbox is empty."""
    wait_for(lambda: agent.outbox.acked_seq() >= upto and agent.unacked() == 0, timeout,
             what=f"ack of seq {upto} and an empty outbox")


def assert_ingest_has_all(site, drafts_tags: list[str], device=DEV) -> None:
    """Every marker stored exactly once, seqs 1..n all there, and the chain intact."""
    markers = stored_markers(site, device)
    missing = [t for t in drafts_tags if markers[t] == 0]
    assert not missing, f"{len(missing)} events never stored, e.g. {missing[:5]}"
    assert all(markers[t] == 1 for t in drafts_tags)
    seqs = ingest_store_seqs(site, device)
    assert seqs == list(range(1, len(seqs) + 1)), "stored seqs have gaps"
    report = check_capture(ingest_store_payloads(site, device),
                           Verifier.from_file(site.device_public_key(device)))
    assert report.ok, report.problems[:5]
    assert report.events == len(seqs)
    assert ingest_device(site, device)["accepted"] == len(seqs)


def test_normal_flow_delivers_acks_and_prunes(site, services):
    config = add_device(site, DEV)
    ingest = services.ingest(site.ingest_config)
    ingest.wait_connected()
    agent = services.agent(config)
    agent.wait_connected()

    drafts = mixed_drafts(30, "normal")
    seqs = append_all(agent, drafts)
    # A second writer on the same outbox file, in another process, while the agent runs.
    done = cli("cocoon-agent", "--config", config, "emit", "--type", "test.manual",
               "--priority", "alert", "--body", json.dumps({"marker": "from-cli"}))
    assert done.returncode == 0, done.stderr
    cli_seq = int(done.stdout.strip())
    assert cli_seq > max(seqs)

    wait_delivered(agent, cli_seq)
    stats = agent.outbox.stats()
    assert stats.counts["pending"] + stats.counts["sent"] == 0
    assert stats.acked_seq >= cli_seq
    assert_ingest_has_all(site, [d.body["marker"] for d in drafts] + ["from-cli"])
    types = {r["type"] for r in ingest_store_rows(site, DEV)}
    assert {"agent.started", "purchase.recorded", "test.manual"} <= types


def test_broker_down_backlog_is_delivered_once(site, services):
    config = add_device(site, DEV)
    ingest = services.ingest(site.ingest_config)
    ingest.wait_connected()
    agent = services.agent(config)
    agent.wait_connected()

    site.broker.stop()
    wait_for(lambda: not agent.link.status.connected and not ingest.link.status.connected,
             10, what="both links to notice the broker is gone")
    drafts = mixed_drafts(200, "down")
    seqs = append_all(agent, drafts)
    assert agent.outbox.acked_seq() < min(seqs)
    assert agent.unacked() >= 200

    site.broker.start()
    wait_delivered(agent, max(seqs), timeout=30)
    assert_ingest_has_all(site, [d.body["marker"] for d in drafts])
    assert agent.link.status.connects >= 2


def test_blackhole_mid_stream_then_pass(site, services, proxy):
    config = add_device(site, DEV, mqtt={"port": proxy.port, "keepalive_s": 1})
    ingest = services.ingest(site.ingest_config)
    ingest.wait_connected()
    agent = services.agent(config)
    agent.wait_connected()

    first = mixed_drafts(60, "before")
    append_all(agent, first[:30])
    proxy.set_mode("blackhole")  # mid-stream: part of the batch is lost on the wire
    seqs = append_all(agent, first[30:])
    wait_for(lambda: not agent.link.status.connected, 10,
             what="the agent to notice the dead link (keepalive)")
    later = mixed_drafts(30, "during")
    seqs += append_all(agent, later)
    assert agent.unacked() > 0
    proxy.set_mode("pass")
    wait_delivered(agent, max(seqs), timeout=20)
    assert_ingest_has_all(site, [d.body["marker"] for d in first + later])


def test_repeated_resets(site, services, proxy):
    config = add_device(site, DEV, mqtt={"port": proxy.port})
    ingest = services.ingest(site.ingest_config)
    ingest.wait_connected()
    agent = services.agent(config)
    agent.wait_connected()

    drafts, seqs = [], []
    for round_ in range(5):
        batch = mixed_drafts(40, f"reset{round_}")
        drafts += batch
        connects = agent.link.status.connects
        seqs += append_all(agent, batch[:20])
        proxy.set_mode("reset")  # RST while events are in flight
        seqs += append_all(agent, batch[20:])
        proxy.set_mode("pass")
        wait_for(lambda n=connects: agent.link.status.connects > n, 10,
                 what=f"reconnect after reset {round_}")
    wait_delivered(agent, max(seqs), timeout=20)
    assert_ingest_has_all(site, [d.body["marker"] for d in drafts])
    assert proxy.resets >= 5


def test_refuse_then_pass(site, services, proxy):
    config = add_device(site, DEV, mqtt={"port": proxy.port})
    ingest = services.ingest(site.ingest_config)
    ingest.wait_connected()
    agent = services.agent(config)
    agent.wait_connected()

    proxy.set_mode("reset")  # drop the current connection...
    proxy.set_mode("refuse")  # ...and refuse the next ones
    wait_for(lambda: "refused" in agent.link.status.last_error.lower(), 10,
             what="a refused reconnect")
    drafts = mixed_drafts(50, "refused")
    seqs = append_all(agent, drafts)
    assert not agent.link.status.connected
    proxy.set_mode("pass")
    wait_delivered(agent, max(seqs), timeout=20)
    assert_ingest_has_all(site, [d.body["marker"] for d in drafts])


def test_live_events_overtake_backlog_without_starving_it(site, services, tmp_path):
    backlog_n = 5000
    config = add_device(site, DEV, mqtt={"inflight": 4}, heartbeat_s=30)
    backlog = [Draft("scale.reading" if i % 2 else "purchase.recorded",
                     "telemetry" if i % 2 else "money", {"marker": f"old-{i}"})
               for i in range(backlog_n)]
    t0 = time.monotonic()
    append_offline(site, DEV, backlog, threads=8)
    t_backlog = time.monotonic() - t0
    # The ingest in a process of its own, as in production: in this test's process its
    # verification would hold the interpreter from the live producer below while the link's
    # own process sends the whole backlog, and nothing would be left to overtake.
    ingest_log = tmp_path / "ingest.log"
    ingest = subprocess.Popen([str(BIN / "cocoon-ingest"), "--config", str(site.ingest_config),
                               "run"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=ingest_log.open("wb"))
    try:
        wait_for(lambda: "mqtt connected" in ingest_log.read_text(errors="replace"), 20,
                 what="the ingest connected")
        _overtake(site, services, config, backlog, t_backlog)
    finally:
        ingest.terminate()
        ingest.wait(timeout=30)


def _overtake(site, services, config, backlog: list, t_backlog: float) -> None:
    backlog_n = len(backlog)
    agent = services.agent(config)
    agent.wait_connected()
    wait_for(lambda: agent.uplink.published > 0, 10, what="the uplink to start sending")
    backlog_top = backlog_n  # the events recorded while the agent was not running

    # Live traffic for as long as the backlog drains: a sale every few milliseconds, bounded
    # in count and time.
    stop, live = threading.Event(), []
    give_up = time.monotonic() + 60

    def produce():
        while len(live) < 10_000 and time.monotonic() < give_up:
            live.append(agent.append("purchase.recorded", "money",
                                     {"marker": f"live-{len(live)}"}))
            if stop.wait(0.005):
                return

    producer = threading.Thread(target=produce, name="live-producer", daemon=True)
    producer.start()
    try:
        wait_for(lambda: live and live[0] in set(ingest_store_seqs(site, DEV)), 20,
                 what="the first live event at the ingest")
        # Overtaken: judged at the end, by the order the ingest processed events in (a batch
        # stores many at one commit, so what is stored at one moment cannot tell).

        def backlog_done():
            return ingest_device(site, DEV)["watermark"] >= backlog_top

        wait_for(lambda: backlog_done() or not producer.is_alive(), 40, what="the backlog")
        assert backlog_done(), "the backlog was starved by live traffic"
        assert producer.is_alive(), "live traffic ended before the backlog drained"
    finally:
        stop.set()
        producer.join(10)
    assert min(live) > backlog_top
    wait_delivered(agent, max(live), timeout=30)
    assert_ingest_has_all(site, [d.body["marker"] for d in backlog]
                          + [f"live-{i}" for i in range(len(live))])
    # How the live events fared: most were stored before the backlog's last event.
    rows = ingest_store_rows(site, DEV)
    backlog_end = max(r["received_at"] for r in rows if r["seq"] <= backlog_top)
    early = sum(1 for r in rows if r["seq"] > backlog_top and r["received_at"] < backlog_end)
    # Most of them: the producer runs while the backlog drains and stops soon after it ends;
    # and the first ones too, though the uplink reads its streams again at every ack timeout
    # (2 s here: the ack cannot pass the live events ahead of the backlog), which must not
    # put the live events not yet sent behind the backlog. (The very first may be read with
    # the backlog, if it was appended before the uplink's backlog cursor passed its seq.)
    assert early * 2 > len(live), ("live events waited for the backlog", early, len(live))
    received = {r["seq"]: r["received_at"] for r in rows}
    first = [seq for seq in live[1:21] if received[seq] < backlog_end]
    assert len(first) == 20, ("the first live events waited for the backlog", first)
    print(f"backlog of {backlog_n} appended in {t_backlog:.1f} s; {early} of {len(live)} live "
          f"events stored before the backlog finished")


def test_certificate_from_another_ca_fails_auth_instead_of_hanging(site, services, tmp_path):
    rogue = LocalCA.create(tmp_path / "rogue-ca").issue("rogue-01")
    config = add_device(site, "rogue-01", mqtt={"cert_file": str(rogue.cert_file),
                                                "key_file": str(rogue.key_file)})
    agent = services.agent(config)
    wait_for(lambda: agent.link.status.auth_failed, 10, what="auth_failed")
    status = agent.link.status
    assert not status.connected and status.connects == 0
    assert "did not accept the connection" in status.last_error
    assert "cert_file" in status.last_error
    agent.stop(timeout=5)  # and it stops promptly


class _Tls12Link(MqttLink):
    """A link that offers at most TLS 1.2, where the broker refuses a client certificate with
    a handshake alert instead of closing after the handshake."""

    def _make_client(self):
        client = super()._make_client()
        client._ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
        return client


class _Quiet:
    def __getattr__(self, name):
        return lambda *args: None


@pytest.mark.parametrize("case", ["tls1.2 rogue client", "untrusted server"])
def test_certificate_problems_are_reported_as_auth_failures(site, tmp_path, case):
    rogue_ca = LocalCA.create(tmp_path / "rogue-ca")
    if case == "tls1.2 rogue client":
        pair, ca_file, link_class = rogue_ca.issue("rogue-01"), site.ca.cert_file, _Tls12Link
    else:  # our own certificate is fine, but we pin the wrong CA for the broker
        pair, ca_file, link_class = site.ca.issue("dev-b"), rogue_ca.cert_file, MqttLink
    settings = LinkSettings("probe", site.broker.host, site.broker.port, ca_file,
                            pair.cert_file, pair.key_file, connack_timeout_s=2,
                            reconnect_min_s=0.05, reconnect_max_s=0.5)
    link = link_class(settings, _Quiet())
    stop = threading.Event()
    thread = threading.Thread(target=link.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: link.status.auth_failed, 10, what="auth_failed")
        assert not link.status.connected and link.status.connects == 0
        assert "ssl" in link.status.last_error.lower()  # the TLS reason itself is shown
        assert "check [mqtt] cert_file, key_file and ca_file" in link.status.last_error
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_ingest_raises_and_closes_silence_alert(site, services):
    # The device speaks every 0.1 s; the ingest expects one every 0.5 s and alerts after two
    # missed intervals (1 s), checking every 0.5 s.
    config = add_device(site, DEV, heartbeat_s=0.1)
    ingest = services.ingest(site.ingest_config, heartbeat_interval_s=0.5, silence_intervals=2)
    ingest.wait_connected()
    agent = services.agent(config)
    wait_for(lambda: ingest_device(site, DEV)["accepted"] >= 3, 10, what="heartbeats stored")
    assert ingest_alerts(site, DEV) == []
    agent.stop()
    stopped_at = time.time()

    alerts = wait_for(lambda: ingest_alerts(site, DEV), 10, what="a device.silent alert")
    assert [a["kind"] for a in alerts] == ["device.silent"]
    assert alerts[0]["opened_at"] >= stopped_at
    shown = cli("cocoon-ingest", "--config", site.ingest_config, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    rows = {r["device"]: r for r in json.loads(shown.stdout)}
    assert rows[DEV]["open_alerts"] == ["device.silent"]

    services.agent(config)
    wait_for(lambda: not ingest_alerts(site, DEV), 10, what="the alert to close")
    history = ingest_alerts(site, DEV, open_only=False)
    assert history[-1]["kind"] == "device.silent"
    assert history[-1]["closed_at"] >= history[-1]["opened_at"] >= stopped_at
    shown = cli("cocoon-ingest", "--config", site.ingest_config, "status", "--json")
    assert {r["device"]: r for r in json.loads(shown.stdout)}[DEV]["open_alerts"] == []


def test_two_ingest_workers_share_the_stream(site, services):
    """Two workers in one shared-subscription group, on one store file.

    Each event is delivered to one worker only, so separate stores would each hold a subset with
    gaps, and neither could acknowledge past its first gap: cumulative acks need a store that
    sees every event. The design supports that by pointing the workers at the same data_dir
    (same store, same ack key; SQLite serialises their transactions); they need distinct
    client ids ([ingest] id) or the broker would keep kicking one off.
    """
    config = add_device(site, DEV)
    first = services.ingest(site.ingest_config)
    second = services.ingest(site.ingest_config, id="ingest-b")
    first.wait_connected()
    second.wait_connected()
    agent = services.agent(config)
    agent.wait_connected()

    drafts = mixed_drafts(300, "shared")
    seqs = append_all(agent, drafts)
    wait_delivered(agent, max(seqs), timeout=30)
    assert_ingest_has_all(site, [d.body["marker"] for d in drafts])
    a, b = first.stats["accepted"], second.stats["accepted"]
    assert a > 0 and b > 0, f"one worker got nothing ({a}, {b})"
    assert a + b == len(ingest_store_seqs(site, DEV))
    assert first.link.status.connects == 1 and second.link.status.connects == 1


def test_fault_proxy_modes():
    """The fault injector itself, against a local echo server."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def echo():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    while data := conn.recv(100):
                        conn.sendall(data)
                except OSError:
                    pass

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()

    def connect(p):
        s = socket.create_connection(("127.0.0.1", p.port), timeout=1)
        s.settimeout(0.3)
        return s

    try:
        with FaultProxy(*server.getsockname()) as p:
            with connect(p) as c:
                c.sendall(b"ping")
                assert c.recv(10) == b"ping"
                p.set_mode("blackhole")
                c.sendall(b"lost")
                with pytest.raises(TimeoutError):
                    c.recv(10)  # swallowed, and the connection stays open
            p.set_mode("reset")
            with pytest.raises(OSError), connect(p) as c:
                c.sendall(b"x")
                c.recv(10)  # reset by the proxy
            p.set_mode("refuse")
            with pytest.raises(ConnectionRefusedError):
                connect(p)
            p.set_mode("pass")
            with connect(p) as c:
                c.sendall(b"back")
                assert c.recv(10) == b"back"
                p.set_mode("reset")
                with pytest.raises(ConnectionResetError):
                    c.recv(10)
            assert p.resets >= 2
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_silence_is_judged_only_after_the_ingest_has_listened_long_enough(site, services):
    """Devices cannot be heard while the ingest is down: right after it comes back, a device
    last heard before the outage is not silent until the ingest has listened a whole limit."""
    config = add_device(site, DEV, heartbeat_s=0.1)
    first = services.ingest(site.ingest_config, heartbeat_interval_s=0.5, silence_intervals=2)
    first.wait_connected()
    agent = services.agent(config)
    wait_for(lambda: ingest_device(site, DEV)["accepted"] >= 3, 10, what="heartbeats stored")
    agent.stop()                                     # last heard well over the limit ago ...
    first.stop()
    time.sleep(1.5)
    second = services.ingest(site.ingest_config, heartbeat_interval_s=0.5, silence_intervals=2)
    second.wait_connected()
    time.sleep(0.6)                                  # ... but the ingest has listened 0.6 s
    assert ingest_alerts(site, DEV, open_only=False) == []
    before = ingest_device(site, DEV)["accepted"]
    services.agent(config)
    wait_for(lambda: ingest_device(site, DEV)["accepted"] > before, 10, what="heard again")
    time.sleep(1.2)
    assert ingest_alerts(site, DEV, open_only=False) == []

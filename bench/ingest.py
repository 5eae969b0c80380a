"""Benchmark of the bank's ingest on PostgreSQL against one local Mosquitto with TLS; every figure
from one run.

    .venv/bin/python bench/ingest.py [--events N] [--devices N] [--workers 1,2,4] [--no-profile]

Devices' events (heartbeats) are sealed and signed beforehand (Ed25519, as the agent does);
in each phase one paho client per device publishes all of its events with QoS 1 (an in-flight
window of 100) over TLS, and the phase lasts from the first publish until every event is in the
`events` table of a fresh database of one PostgreSQL server (its default durability: fsync on,
synchronous_commit on).

(a) the ceiling: a bare subscriber (paho, MQTT 5, the shared subscription, its PUBACKs sent by
    paho on receipt) that parses each message and inserts the same rows into the same table in
    batches of up to 500 (`INSERT ... ON CONFLICT DO NOTHING`, one transaction per batch)
    without verifying anything;
(b) `cocoon-ingest run` with 1, 2 and 4 workers on the shared subscription and the database:
    verification, chain checks, exactly once, acks to the broker after the commit, signed acks
    to the devices;
and for each: events/s, the ratio to (a), CPU per event of the consumer processes and of
PostgreSQL (its server processes), and the peak RSS (VmHWM) of each consumer process. When one
worker is below 0.6 of the ceiling, a further run of one worker under cProfile gives where its
time goes: receive (paho: TLS and MQTT packets), parse (JSON and the event's shape), canonical
bytes, verify (the signature), store (the SQL of the batch and the store's logic), ack (PUBACKs
and the signed acks after the commit); as shares of the worker's time, profiler overhead
included. The broker, PostgreSQL, the publishers and the consumers share the machine's cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pstats
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# A device's heartbeat, the bulk of what a station sends (one a minute). Not a purchase: the
# bank recomputes each purchase.recorded from its pricing record (ingest/purchases.py), which
# these figures leave out, as the ceiling does.
BODY = {"uptime_s": 86400, "outbox_depth": 3, "oldest_pending_age_s": None,
        "outbox_used_bytes": 1048576, "clock_synced": True, "link_connected": True}
INFLIGHT = 100              # the publishers' in-flight window
BATCH = 500                 # rows per transaction of the bare subscriber (the ingest's batch_max)
TIMEOUT_S = 600.0
GROUP = "ingest"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PG_BIN = Path(os.environ.get("COCOON_PG_BIN", "/usr/lib/postgresql/15/bin"))


# -- processes -------------------------------------------------------------------------------

def cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                out.append(int(entry.name))
    return out


class Postgres:
    """A PostgreSQL server in a temporary directory with its default durability."""

    def __init__(self, root: Path):
        from tests.support.postgres import PostgresServer, free_port

        self.server = PostgresServer()
        self.free_port = free_port

    def start(self) -> None:
        srv = self.server
        srv.sockets.mkdir()
        if os.geteuid() == 0:
            import pwd

            user = pwd.getpwnam("postgres")
            for path in (srv.root, srv.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        srv._check(srv._run(str(PG_BIN / "initdb"), "-D", str(srv.data), "-A", "trust", "-U",
                            "postgres", "-E", "UTF8", "--locale=C", "--no-sync"), "initdb")
        srv.port = self.free_port()
        options = (f"-p {srv.port} -k {srv.sockets} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=60 -c shared_buffers=128MB")
        srv._check(srv._run(str(PG_BIN / "pg_ctl"), "-D", str(srv.data), "-o", options, "-l",
                            str(srv.log), "-w", "-t", "60", "start"), "start")
        srv.started = True
        import psycopg

        srv._admin = psycopg.connect(srv.url("postgres"), autocommit=True)
        self.pid = int((srv.data / "postmaster.pid").read_text().split()[0])

    def cpu_s(self) -> float:
        return cpu_s(self.pid) + sum(cpu_s(p) for p in children_of(self.pid))

    def fresh(self) -> str:
        from ingest.store import IngestStore

        url = self.server.url(self.server.database())
        IngestStore(url).close()            # the ingest's schema, for both consumers
        return url

    def count(self, url: str) -> int:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM events").fetchone()[0]

    def stop(self) -> None:
        self.server.stop()


# -- the bare subscriber (a child process) ---------------------------------------------------

def bare_subscriber(mqtt_json: str, url: str) -> None:
    """(a): subscribe, parse, insert in batches; no verification, no chain, no acks."""
    import paho.mqtt.client as mqtt
    import psycopg
    from paho.mqtt.enums import CallbackAPIVersion

    cfg = json.loads(mqtt_json)
    inbox: list[tuple[str, bytes]] = []
    lock = threading.Condition()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare",
                         protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=cfg["ca_file"], certfile=cfg["cert_file"], keyfile=cfg["key_file"],
                   cert_reqs=ssl.CERT_REQUIRED)

    def on_connect(c, userdata, flags, rc, props):
        c.subscribe(f"$share/{GROUP}/cocoon/v1/+/events", qos=1)

    def on_message(c, userdata, msg):
        with lock:
            inbox.append((msg.topic, bytes(msg.payload)))
            lock.notify()

    client.on_connect, client.on_message = on_connect, on_message
    client.connect(cfg["host"], cfg["port"], keepalive=30)
    client.loop_start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sql = ("INSERT INTO events (device, seq, hash, prev, type, priority, ts, payload, "
           "received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            with lock:
                lock.wait_for(lambda: inbox, timeout=0.2)
                batch, inbox[:BATCH] = inbox[:BATCH], []
            if not batch:
                continue
            rows, now = [], time.time()
            for _topic, payload in batch:
                ev = json.loads(payload)
                rows.append((ev["device"], ev["seq"], hashlib.sha256(payload).hexdigest(),
                             ev["prev"], ev["type"], ev["priority"], ev["ts"], payload, now))
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(sql, rows)
    client.loop_stop()
    client.disconnect()


# -- the run ---------------------------------------------------------------------------------

def seal_events(site, devices: list[str], n: int) -> dict[str, list[bytes]]:
    from agent.contract import events
    from agent.contract.events import Draft
    from agent.contract.signing import load_signer

    out = {}
    for device in devices:
        signer = load_signer(site.devices[device].parent / "data" / "device-signing.key")
        prev, payloads = events.GENESIS_PREV, []
        for seq in range(1, n + 1):
            draft = Draft("device.heartbeat", "telemetry", {**BODY, "uptime_s": 86400 + seq})
            _, encoded = events.seal_encoded(draft, device=device, seq=seq, prev=prev,
                                             signer=signer)
            payloads.append(encoded)
            prev = events.sha256_hex(encoded)
        out[device] = payloads
    return out


def publish_all(site, payloads: dict[str, list[bytes]]) -> list:
    """Start one publisher per device; returns the clients (stopped by the caller)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    clients = []
    for device, items in payloads.items():
        section = site.mqtt_section(device)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{device}",
                             protocol=mqtt.MQTTv5)
        client.tls_set(ca_certs=section["ca_file"], certfile=section["cert_file"],
                       keyfile=section["key_file"], cert_reqs=ssl.CERT_REQUIRED)
        client.max_inflight_messages_set(INFLIGHT)
        client.max_queued_messages_set(0)
        connected = threading.Event()
        client.on_connect = lambda *a, ev=connected: ev.set()
        client.connect(section["host"], section["port"], keepalive=30)
        client.loop_start()
        if not connected.wait(10):
            raise RuntimeError(f"publisher {device} did not connect")
        clients.append((client, device, items))
    for client, device, items in clients:
        topic = f"cocoon/v1/{device}/events"
        threading.Thread(target=lambda c=client, t=topic, it=items: [
            c.publish(t, p, qos=1) for p in it], daemon=True).start()
    return [c for c, _, _ in clients]


def forget_sessions(site, client_ids: list[str]) -> None:
    """End the consumers' sessions at the broker: a persistent session left subscribed to the
    shared subscription would have the broker queue a share of the next phase's events for
    it."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    section = site.mqtt_section("ingest")
    for cid in client_ids:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        client.tls_set(ca_certs=section["ca_file"], certfile=section["cert_file"],
                       keyfile=section["key_file"], cert_reqs=ssl.CERT_REQUIRED)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        client.connect(section["host"], section["port"], keepalive=30, clean_start=True,
                       properties=props)
        client.loop_start()
        time.sleep(0.3)
        client.disconnect()
        client.loop_stop()


def wait_subscribed(broker_log: Path, client_ids: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = broker_log.read_text(errors="replace") if broker_log.exists() else ""
        lines = [ln for ln in text.splitlines() if f"$share/{GROUP}/" in ln]
        if all(any(f" {cid} " in ln for ln in lines) for cid in client_ids):
            return
        time.sleep(0.05)
    raise RuntimeError(f"not all of {client_ids} subscribed")


def phase(name, site, pg, payloads, start_consumers, total) -> dict:
    url = pg.fresh()
    broker_log = site.broker.log_file
    broker_log.write_text("")
    procs, client_ids = start_consumers(url)
    try:
        wait_subscribed(broker_log, client_ids)
        cpu0 = {p.pid: cpu_s(p.pid) for p in procs}
        pg0 = pg.cpu_s()
        t0 = time.monotonic()
        publishers = publish_all(site, payloads)
        deadline = t0 + TIMEOUT_S
        while (stored := pg.count(url)) < total:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{name}: {stored} of {total} stored")
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        cpu = sum(cpu_s(p.pid) - cpu0[p.pid] for p in procs)
        pg_cpu = pg.cpu_s() - pg0
        rss = [hwm_mib(p.pid) for p in procs]
        for c in publishers:
            c.loop_stop()
            c.disconnect()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        forget_sessions(site, client_ids)
    return {"name": name, "ev_s": total / elapsed, "cpu_us": cpu / total * 1e6,
            "pg_us": pg_cpu / total * 1e6, "rss": rss, "elapsed": elapsed}


def ingest_config(site, root: Path, worker: str, url: str) -> Path:
    from agent.demo.sandbox import write_toml

    d = site.ingest_config.parent
    return write_toml(root / f"ingest-{worker}.toml", {
        "ingest": {"id": "ingest", "worker": worker, "data_dir": str(d),
                   "devices_dir": str(d / "devices"), "group": GROUP,
                   "heartbeat_interval_s": 60},
        "mqtt": site.mqtt_section("ingest"),
        "store": {"url": url},
    })


def run_ingest(site, root: Path, workers: int, profile: Path | None = None):
    def start(url):
        procs, ids = [], []
        for i in range(workers):
            config = ingest_config(site, root, f"w{i}", url)
            head = [sys.executable]
            if profile is not None:
                head += ["-m", "cProfile", "-o", str(profile)]
            procs.append(subprocess.Popen(
                [*head, "-m", "ingest.cli", "--log-level", "warning", "--config", str(config),
                 "run"], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=open(root / f"ingest-w{i}.log", "ab")))  # noqa: SIM115
            ids.append(f"ingest-w{i}")
        return procs, ids
    return start


def run_bare(site, root: Path):
    def start(url):
        section = site.mqtt_section("ingest")
        proc = subprocess.Popen(
            [sys.executable, __file__, "--bare-subscriber", json.dumps(section), url], cwd=ROOT,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(root / "bare.log", "ab"))  # noqa: SIM115
        return [proc], ["bench-bare"]
    return start


def stages(profile: Path) -> dict[str, float]:
    """Where one worker's time went, from its cProfile output: shares of its wall time in
    the link's loop (waiting for messages excluded)."""
    st = pstats.Stats(str(profile))

    def cum(file_part: str, func: str) -> float:
        return sum(v[3] for (f, _, fn), v in st.stats.items()
                   if fn == func and file_part in f)

    parse = cum("agent/contract/envelope.py", "parse_json_object") + \
        cum("agent/contract/events.py", "check_shape")
    canonical = cum("agent/contract/canonical.py", "canonical")
    verify = cum("agent/contract/signing.py", "verify")
    batch = cum("ingest/store.py", "process_batch")
    store_and_ack = cum("ingest/service.py", "_store_and_ack")
    receive = cum("paho/mqtt/client.py", "loop_read") - cum("ingest/service.py", "on_message")
    parts = {"receive": receive, "parse": parse, "canonical bytes": canonical,
             "verify": verify, "store": batch - parse - canonical - verify,
             "ack": store_and_ack - batch}
    total = sum(parts.values()) or 1.0
    return {k: v / total for k, v in parts.items()}


def mosquitto_broker(site):
    """The site's broker, keeping what it queues for a consumer that is behind (Mosquitto's
    1000 per session by default, beyond which it drops)."""
    broker = site.broker
    original = broker._write_config

    def write_config():
        original()
        with open(broker.conf_file, "a") as fh:
            fh.write("max_queued_messages 0\n")
    broker._write_config = write_config
    return broker


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=10_000, help="events per device")
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--bare-subscriber", nargs=2, metavar=("MQTT", "URL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_subscriber:
        bare_subscriber(*args.bare_subscriber)
        return
    from agent.demo.sandbox import Site

    root = Path(tempfile.mkdtemp(prefix="cocoon-bench-ingest-"))
    pg = Postgres(root)
    site = Site.create(root / "site")
    devices = [f"station-{i + 1:02d}" for i in range(args.devices)]
    try:
        mosquitto_broker(site)
        site.start_broker()
        for device in devices:
            site.add_device(device)
        pg.start()
        payloads = seal_events(site, devices, args.events)
        total = args.devices * args.events
        size = sum(len(p) for items in payloads.values() for p in items) // total
        results = [phase("(a) bare subscriber: the ceiling", site, pg, payloads,
                         run_bare(site, root), total)]
        for n in (int(w) for w in args.workers.split(",")):
            results.append(phase(f"(b) cocoon-ingest, {n} worker{'s' * (n > 1)}", site, pg,
                                 payloads, run_ingest(site, root, n), total))
        profile = None
        one = next((r for r in results if r["name"].endswith(" 1 worker")), None)
        if one and one["ev_s"] < 0.6 * results[0]["ev_s"] and not args.no_profile:
            profile = root / "worker.prof"
            phase("(c) 1 worker under cProfile", site, pg, payloads,
                  run_ingest(site, root, 1, profile), total)
        report(results, total, size, args, profile)
    finally:
        site.broker.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def report(results, total, size, args, profile) -> None:
    ceiling = results[0]["ev_s"]
    print(f"ingest: {total:,} events of {size} B from {args.devices} devices (Ed25519), "
          f"QoS 1 over TLS to one Mosquitto, PostgreSQL 15 (fsync on), {os.cpu_count()} CPUs "
          "shared by all")
    print(f"{'measure':42} {'result':>12} {'vs (a)':>7} {'target':>10}  {'CPU us/ev':>9} "
          f"{'PG us/ev':>8}  peak RSS per process")
    for r in results:
        ratio = r["ev_s"] / ceiling
        target = ""
        if r["name"].endswith(" 1 worker"):
            target = ">= 0.60 " + ("met" if ratio >= 0.6 else "missed")
        rss = ", ".join(f"{m:.1f}" for m in r["rss"]) + " MiB"
        print(f"{r['name']:42} {r['ev_s']:>8,.0f} ev/s {ratio:>6.2f} {target:>10}  "
              f"{r['cpu_us']:>9,.0f} {r['pg_us']:>8,.0f}  {rss}")
    if profile is not None and profile.exists():
        print("one worker's time by stage (cProfile, wall time in the link's work):")
        for stage, share in stages(profile).items():
            print(f"  {stage:16} {share:6.1%}")


if __name__ == "__main__":
    main()

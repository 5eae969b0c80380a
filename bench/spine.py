"""Benchmark of the event spine against a local Mosquitto with TLS, all figures from one run.

    .venv/bin/python bench/spine.py [--events N] [--backlog N]

(a) raw paho QoS 1 publishing of the same event payloads: the ceiling;
(b) the agent pipeline: seal + sign -> durable append (money, synchronous=FULL, group commit from
    several producer threads) -> publish -> PUBACK; events/s and the ratio to (a);
(c) draining a backlog already in the outbox until every event is PUBACKed; ratio to (a);
(d) peak RSS of the agent process running (b) and (c);
(e) bytes written to disk per event (/proc/self/io write_bytes), money and telemetry.
The agent side runs in its own process so that (d) and (e) count only the agent. No ingest runs:
acknowledgements are not part of these figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEVICE = "bench-01"
BODY = {"voucher": "bench-01-20260601-0001", "farmer_id": "F-000123", "net_g": "52340",
        "unit_price": "38.50", "amount": "2015.09", "grade": "+1", "note": "x" * 120}


def proc_io_write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- (a) the ceiling ------------------------------------------------------------------------


def raw_paho(config_path: Path, payloads: list[bytes]) -> float:
    import ssl

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from agent.config import load_config

    cfg = load_config(config_path).mqtt
    done = threading.Event()
    acked = [0]
    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=mqtt.MQTTv5)
    ctx = ssl.create_default_context(cafile=str(cfg.ca_file))
    ctx.load_cert_chain(str(cfg.cert_file), str(cfg.key_file))
    client.tls_set_context(ctx)
    client.max_inflight_messages_set(cfg.inflight)
    client.on_connect = lambda *a: connected.set()

    def on_publish(c, u, mid, rc, props):
        acked[0] += 1
        if acked[0] == len(payloads):
            done.set()

    client.on_publish = on_publish
    client.connect(cfg.host, cfg.port)
    client.loop_start()
    connected.wait(10)
    start = time.perf_counter()
    for payload in payloads:
        client.publish(f"cocoon/v1/{DEVICE}/events", payload, qos=1)
    done.wait(600)
    elapsed = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    return len(payloads) / elapsed


# -- the agent side, in a child process ---------------------------------------------------


def child(config_path: Path, mode: str, count: int, producers: int) -> dict:
    from agent.config import load_config
    from agent.events import Draft
    from agent.mqtt_link import LinkSettings, MqttLink
    from agent.outbox import Outbox
    from agent.signing import Verifier, load_signer
    from agent.uplink import Uplink

    cfg = load_config(config_path)
    outbox = Outbox(cfg.outbox_path, device=cfg.device.id,
                    signer=load_signer(cfg.device.signing_key_file),
                    capacity_bytes=cfg.outbox.capacity_bytes,
                    telemetry_batch_ms=cfg.outbox.telemetry_batch_ms)

    def append_many(priority: str, n: int) -> None:
        per = [n // producers + (1 if i < n % producers else 0) for i in range(producers)]
        threads = [threading.Thread(target=lambda k=k: [
            outbox.append(Draft("bench.event", priority, BODY)) for _ in range(k)])
            for k in per]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    result: dict = {}
    if mode == "io":
        for priority in ("money", "telemetry"):
            before = proc_io_write_bytes()
            append_many(priority, count)
            result[f"bytes_per_{priority}"] = (proc_io_write_bytes() - before) / count
        return result

    uplink = Uplink(cfg.device.id, outbox, Verifier.from_file(cfg.keys.ingest_public_key_file),
                    window=cfg.mqtt.inflight, ack_timeout_s=3600)
    link = MqttLink(LinkSettings.from_config(cfg.device.id, cfg.mqtt), uplink)
    if mode == "backlog":
        append_many("money", count)
    stop = threading.Event()
    start = time.perf_counter()
    thread = threading.Thread(target=link.run, args=(stop,), daemon=True)
    thread.start()
    if mode == "pipeline":
        append_many("money", count)
    while uplink.pubacked < count:
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    stop.set()
    thread.join(10)
    result["rate"] = count / elapsed
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def run_child(config_path: Path, mode: str, count: int, producers: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--config", str(config_path),
                          "--events", str(count), "--producers", str(producers)],
                         capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000, help="events for (a) and (b)")
    ap.add_argument("--backlog", type=int, default=100_000, help="backlog size for (c)")
    ap.add_argument("--producers", type=int, default=32, help="producer threads for (b)")
    ap.add_argument("--inflight", type=int, default=32, help="MQTT in-flight window, both sides")
    ap.add_argument("--child", choices=["pipeline", "backlog", "io"], help=argparse.SUPPRESS)
    ap.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.config, args.child, args.events, args.producers)))
        return 0

    from agent import events
    from agent.events import Draft
    from agent.sandbox import Site
    from agent.signing import Ed25519Signer

    with tempfile.TemporaryDirectory(prefix="cocoon-bench-") as tmp:
        site = Site.create(Path(tmp) / "site", mqtt_overrides={"inflight": args.inflight})
        configs = {name: site.add_device(f"{DEVICE}" if name == "a" else f"bench-{name}",
                                         outbox={"capacity_bytes": 2**34})
                   for name in ("a", "b", "c", "e")}
        site.start_broker()
        signer = Ed25519Signer.generate()
        payloads, prev = [], events.GENESIS_PREV
        for seq in range(1, args.events + 1):
            ev = events.seal(Draft("bench.event", "money", BODY), device=DEVICE, seq=seq,
                             prev=prev, signer=signer)
            prev = events.event_hash(ev)
            payloads.append(events.encode(ev))
        size = sum(map(len, payloads)) / len(payloads)
        try:
            a = raw_paho(configs["a"], payloads)
            b = run_child(configs["b"], "pipeline", args.events, args.producers)
            c = run_child(configs["c"], "backlog", args.backlog, args.producers)
            e = run_child(configs["e"], "io", 2000, args.producers)
        finally:
            site.broker.stop()

    rows = [
        ("(a) raw paho QoS 1 publish (ceiling)", f"{a:,.0f} ev/s", "1.00", "-"),
        ("(b) sign + durable append + publish + PUBACK", f"{b['rate']:,.0f} ev/s",
         f"{b['rate'] / a:.2f}", ">= 0.35"),
        (f"(c) drain a {args.backlog:,}-event backlog", f"{c['rate']:,.0f} ev/s",
         f"{c['rate'] / a:.2f}", ">= 0.90"),
        ("(d) peak RSS of the agent process",
         f"{max(b['peak_rss_mib'], c['peak_rss_mib']):.1f} MiB", "", "<= 48 MiB"),
        ("(e) bytes written per money event", f"{e['bytes_per_money']:,.0f} B", "", "reported"),
        ("(e) bytes written per telemetry event", f"{e['bytes_per_telemetry']:,.0f} B", "",
         "reported"),
    ]
    print(f"event spine benchmark: {args.events:,} events of {size:.0f} bytes, "
          f"{args.producers} producer threads, Mosquitto with TLS on loopback")
    print(f"{'measure':48} {'result':>14} {'vs (a)':>7}  target")
    for name, value, ratio, target in rows:
        print(f"{name:48} {value:>14} {ratio:>7}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the event spine against one local Mosquitto with TLS; every figure from one run.

    .venv/bin/python bench/spine.py [--events N] [--backlog N] [--producers N] [--inflight N]

(a) raw paho QoS 1 publishing of the same sealed event payloads: the ceiling. A paho 2.x client
    with a TLS client certificate, MQTT 5, TCP_NODELAY and the agent's in-flight window
    ([mqtt] inflight) publishes N pre-built events; events/s until the last PUBACK. Measured
    three times, between the agent figures; the median is the baseline.
(b) the agent pipeline: producer threads call Outbox.append (money: sealed, signed, committed
    with synchronous=FULL by group commit) while the real Uplink/MqttLink publishes; events/s
    from the first append to the moment every row is in state `sent` in the outbox (PUBACK
    received and recorded).
(c) draining a backlog built beforehand in the outbox (by a separate agent process), from
    connecting the uplink to every row in state `sent`.
(d) peak RSS (VmHWM) of every agent process.
(e) bytes written to disk per event (/proc/self/io write_bytes of the agent process, until its
    outbox is closed): money through the whole pipeline (with the producers of (b) and with a
    single producer), money append only (the backlog build), telemetry through the pipeline.
Each agent figure is measured in a fresh child process, so (d) and (e) count only the agent: its
outbox and uplink. No ingest runs: its acks (and pruning) are not part of these figures. The
page cache is synced between phases so that one phase's writeback does not slow the next.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# A purchase as a station records it; the sealed event comes to about 500 bytes.
BODY = {"voucher": "20260601-0042", "farmer_id": "F-000123", "net_g": 52340,
        "amount": "2015.09"}
EVENT_TYPE = "purchase.recorded"
TIMEOUT_S = 900.0
SINGLE_EVENTS = 1_000  # (e) with one producer thread: one event per commit
MAX_QUEUED = 30_000  # (a) keeps at most this many messages in paho's queue


def proc_io_write_bytes() -> int:
    """Bytes this process caused to be written to storage: write_bytes less the writes
    cancelled before they reached the disk (a deleted WAL's dirty pages)."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["write_bytes"]) - int(fields["cancelled_write_bytes"])


def cpu_s() -> float:
    """CPU of this process and of its children that have ended (the link process, once the
    agent has stopped it)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def pss_mib() -> float:
    """This process's proportional set size now: shared pages count in part."""
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no Pss in /proc/self/smaps_rollup")


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


# -- (a) the ceiling: raw paho -------------------------------------------------------------


def raw_paho(cfg, count: int) -> dict:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from agent.contract import events, topics
    from agent.contract.events import Draft
    from agent.contract.signing import load_signer

    # Real sealed events of this device, built before the clock starts.
    signer = load_signer(cfg.device.signing_key_file)
    payloads, prev = [], events.GENESIS_PREV
    for seq in range(1, count + 1):
        _, payload = events.seal_encoded(Draft(EVENT_TYPE, "money", BODY), device=cfg.device.id,
                                         seq=seq, prev=prev, signer=signer)
        prev = events.sha256_hex(payload)
        payloads.append(payload)

    m = cfg.mqtt
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{cfg.device.id}-raw",
                         protocol=mqtt.MQTTv5)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(m.ca_file))
    ctx.load_cert_chain(str(m.cert_file), str(m.key_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    client.tls_set_context(ctx)
    client.max_inflight_messages_set(m.inflight)
    client.max_queued_messages_set(0)
    connected, done = threading.Event(), threading.Event()
    state = {"acked": 0, "refused": 0}

    def on_socket_open(c, u, sock):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the agent does

    def on_publish(c, u, mid, rc, props):
        state["acked"] += 1
        if rc.is_failure:
            state["refused"] += 1
        if state["acked"] == count:
            done.set()

    client.on_socket_open = on_socket_open
    client.on_connect = lambda *a: connected.set()
    client.on_publish = on_publish
    client.connect(m.host, m.port, keepalive=m.keepalive_s)
    client.loop_start()
    if not connected.wait(10):
        raise RuntimeError("raw paho client: no CONNACK")
    topic = topics.events(cfg.device.id)
    cpu0, start = cpu_s(), time.perf_counter()
    for n, payload in enumerate(payloads):
        while n - state["acked"] >= MAX_QUEUED:  # packet ids are 16 bits: no wrap-around
            time.sleep(0.001)
        client.publish(topic, payload, qos=1)
    if not done.wait(TIMEOUT_S):
        raise RuntimeError(f"raw paho: {state['acked']} of {count} PUBACKs")
    elapsed = time.perf_counter() - start
    cpu = cpu_s() - cpu0
    client.disconnect()
    client.loop_stop()
    if state["refused"]:
        raise RuntimeError(f"raw paho: broker refused {state['refused']} publishes")
    return {"rate": count / elapsed, "seconds": elapsed, "cpu_us": cpu / count * 1e6,
            "size": sum(map(len, payloads)) / count}


# -- the agent side (b), (c), (d), (e) ---------------------------------------------------


def append_many(outbox, priority: str, count: int, producers: int) -> None:
    """`count` events from `producers` threads, each building its drafts as a workflow would."""
    from agent.contract.events import Draft

    errors: list[BaseException] = []

    def produce(k: int) -> None:
        try:
            for _ in range(k):
                outbox.append(Draft(EVENT_TYPE, priority, BODY))
        except BaseException as exc:
            errors.append(exc)

    shares = [count // producers + (1 if i < count % producers else 0) for i in range(producers)]
    threads = [threading.Thread(target=produce, args=(k,), name=f"producer-{i}")
               for i, k in enumerate(shares) if k]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def wait_all_sent(outbox, uplink, count: int, marks: dict) -> None:
    """Return when `count` PUBACKs have arrived and no row is left in state pending."""
    deadline = time.monotonic() + TIMEOUT_S
    while uplink.pubacked < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{uplink.pubacked} of {count} PUBACKs within {TIMEOUT_S} s")
        time.sleep(0.005)
    marks["last_puback"] = time.perf_counter()
    while outbox.read("SELECT count(*) FROM events WHERE state = 0")[0][0]:
        if time.monotonic() > deadline:
            raise RuntimeError("rows still pending after every PUBACK")
        time.sleep(0.005)
    marks["all_sent"] = time.perf_counter()


def agent_child(cfg, mode: str, count: int, producers: int) -> dict:
    from agent.link.uplink import Uplink
    from agent.ops.service import build_link, open_outbox

    outbox, _ = open_outbox(cfg)
    result: dict = {"commits": 0}
    commit = outbox._commit

    def counted_commit(batch):  # how many events share a commit (one fsync)
        result["commits"] += 1
        return commit(batch)

    outbox._commit = counted_commit
    if mode == "build":
        io0, cpu0, t0 = proc_io_write_bytes(), cpu_s(), time.perf_counter()
        append_many(outbox, "money", count, producers)
        elapsed = time.perf_counter() - t0
        outbox.close()
        result.update(rate=count / elapsed, seconds=elapsed, cpu_us=(cpu_s() - cpu0) / count * 1e6,
                      bytes_per_event=(proc_io_write_bytes() - io0) / count,
                      peak_rss_mib=peak_rss_mib())
        return result

    link, uplink, _ = build_link(cfg, outbox)  # as the agent builds it: [mqtt] link
    stop = threading.Event()
    thread = threading.Thread(target=link.run, args=(stop,), name="mqtt-link", daemon=True)
    marks: dict = {}
    io0, cpu0 = proc_io_write_bytes(), cpu_s()
    if mode == "drain":
        # Connecting is part of draining; starting the link's process is not (after an
        # outage the process is up already): the clock starts at its first report.
        spawned = start = time.perf_counter()
        thread.start()
        if hasattr(link, "child_started_at"):
            deadline = time.monotonic() + 30
            while link.child_started_at is None:
                if time.monotonic() > deadline:
                    raise RuntimeError("the link process did not start")
                time.sleep(0.001)
            start = time.perf_counter() - (time.monotonic() - link.child_started_at)
        result["link_start_s"] = start - spawned
    else:
        thread.start()
        deadline = time.monotonic() + 30
        while not link.status.connected:  # (b) measures a link that is up, not a backlog
            if time.monotonic() > deadline:
                raise RuntimeError(f"agent link did not connect: {link.status.last_error}")
            time.sleep(0.005)
        start = time.perf_counter()
        priority = "telemetry" if mode == "telemetry" else "money"
        producer = threading.Thread(target=append_many, args=(outbox, priority, count, producers))
        producer.start()
    wait_all_sent(outbox, uplink, count, marks)
    if mode != "drain":
        producer.join()
    elapsed = marks["all_sent"] - start
    pss = pss_mib()  # while the link process runs beside: shared pages are split between them
    stop.set()
    thread.join(30)
    if isinstance(uplink, Uplink):
        uplink.close()
    cpu = cpu_s() - cpu0  # the link's process has ended: its CPU counts too
    outbox.close()  # the last connection checkpoints the WAL: its writes count as well
    bye = getattr(link, "last_bye", None) or {}
    written = proc_io_write_bytes() - io0 + bye.get("write_bytes", 0)
    result["link_peak_rss_mib"] = bye.get("peak_rss_kib", 0) / 1024
    result["pss_mib"] = pss + bye.get("pss_kib", 0) / 1024
    result.update(rate=count / elapsed, seconds=elapsed, cpu_us=cpu / count * 1e6,
                  to_last_puback_s=marks["last_puback"] - start,
                  bytes_per_event=written / count, peak_rss_mib=peak_rss_mib(),
                  published=uplink.published)
    return result


def child_main(args) -> dict:
    from agent.config import load_config

    cfg = load_config(args.config)
    if args.child == "raw":
        return raw_paho(cfg, args.events)
    return agent_child(cfg, args.child, args.events, args.producers)


def run_child(config: Path, mode: str, count: int, producers: int) -> dict:
    os.sync()  # the previous phase's dirty pages are written back now, not during this one
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--config",
           str(config), "--events", str(count), "--producers", str(producers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S + 60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} child failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the parent: one Site, one broker, one table --------------------------------------------


def remove_outbox(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def middle(runs: list[dict]) -> dict:
    """The run with the median rate (the upper one of the middle two for an even count)."""
    return sorted(runs, key=lambda r: r["rate"])[len(runs) // 2]


def rates(runs: list[dict]) -> str:
    return ", ".join(f"{r['rate']:,.0f}" for r in runs)


def link_start_note(c: dict) -> str:
    if not c.get("link_start_s"):
        return "The link runs in a thread of the agent's process ([mqtt] link = \"thread\")."
    return (f"The link's own process took {c['link_start_s']:.2f} s to start, before the "
            "clock: after an outage it is running already.")


def link_rss_note(link_rss: dict, together: float, pss: float) -> str:
    if not any(link_rss.values()):
        return f"Proportional set size at the end of a run: at most {pss:.1f} MiB."
    return (f"VmHWM of its link process: {', '.join(f'{k} {v:.1f}' for k, v in link_rss.items())}"
            f" MiB; both processes together at most {together:.1f} MiB of VmHWM (pages of the "
            f"shared libraries counted in each), at most {pss:.1f} MiB of proportional set size "
            "(shared pages split between them) at the end of a run.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000, help="events for (a) and (b)")
    ap.add_argument("--backlog", type=int, default=100_000, help="backlog size for (c)")
    ap.add_argument("--producers", type=int, default=16, help="producer threads for (b)")
    ap.add_argument("--telemetry", type=int, default=0,
                    help="telemetry events for (e) (default: 20 commit windows' worth)")
    ap.add_argument("--inflight", type=int, default=None,
                    help="[mqtt] inflight for both sides (default: the configuration default)")
    ap.add_argument("--link", choices=["process", "thread"], default=None,
                    help="[mqtt] link for the agent (default: the configuration default)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds of (a), (b) and (c); their medians are shown")
    ap.add_argument("--child", choices=["raw", "pipeline", "build", "drain", "telemetry"],
                    help=argparse.SUPPRESS)
    ap.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child_main(args)))
        return 0

    from agent.config import load_config
    from agent.demo.sandbox import Site

    overrides = {} if args.inflight is None else {"inflight": args.inflight}
    if args.link:
        overrides["link"] = args.link
    telemetry_n = args.telemetry or 20 * args.producers
    t_run = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cocoon-bench-") as tmp:
        site = Site.create(Path(tmp) / "site", mqtt_overrides=overrides)
        big = {"outbox": {"capacity_bytes": 2**34}}
        paths = {name: site.add_device(f"bench-{name}", **big)
                 for name in ("raw", "pipe", "drain", "telem", "single")}
        site.start_broker()
        try:
            cfg = load_config(paths["pipe"])
            outboxes = {name: load_config(path).outbox_path for name, path in paths.items()}
            build = run_child(paths["drain"], "build", args.backlog, args.producers)
            saved = Path(tmp) / "backlog.sqlite"  # closed, so the WAL is checkpointed into it
            shutil.copyfile(outboxes["drain"], saved)
            # Other work on the machine moves every figure, the ceiling too: (a), (b) and (c)
            # are measured in rounds, side by side, and the medians are compared.
            raw, pipe, drain = [], [], []
            for _ in range(args.repeat):
                raw.append(run_child(paths["raw"], "raw", args.events, 1))
                remove_outbox(outboxes["pipe"])
                pipe.append(run_child(paths["pipe"], "pipeline", args.events, args.producers))
                remove_outbox(outboxes["drain"])
                shutil.copyfile(saved, outboxes["drain"])
                drain.append(run_child(paths["drain"], "drain", args.backlog, args.producers))
            e = run_child(paths["telem"], "telemetry", telemetry_n, args.producers)
            single = run_child(paths["single"], "pipeline", SINGLE_EVENTS, 1)
        finally:
            site.broker.stop()
    total_s = time.monotonic() - t_run

    a, b, c = middle(raw), middle(pipe), middle(drain)
    ceiling = a["rate"]
    rss = {"(b)": max(r["peak_rss_mib"] for r in pipe), "build": build["peak_rss_mib"],
           "(c)": max(r["peak_rss_mib"] for r in drain), "telemetry": e["peak_rss_mib"],
           "1 producer": single["peak_rss_mib"]}
    worst = max(rss, key=rss.get)
    link_rss = {name: max(r.get("link_peak_rss_mib", 0) for r in runs) for name, runs in
                (("(b)", pipe), ("(c)", drain), ("telemetry", [e]), ("1 producer", [single]))}
    link_worst = max(link_rss, key=link_rss.get)
    together = max(r["peak_rss_mib"] + r.get("link_peak_rss_mib", 0)
                   for r in (*pipe, *drain, e, single))
    pss_together = max(r["pss_mib"] for r in (*pipe, *drain, e, single))

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    def rate_row(name, r, target=None):
        ratio = r["rate"] / ceiling
        return (name, f"{r['rate']:,.0f} ev/s", f"{ratio:.2f}",
                f">= {target:.2f}" if target else "-",
                verdict(ratio >= target) if target else "", f"{r['cpu_us']:.0f}")

    rows = [
        ("(a) raw paho QoS 1 publish: the ceiling", f"{ceiling:,.0f} ev/s", "1.00", "baseline",
         "", f"{a['cpu_us']:.0f}"),
        rate_row("(b) money append -> publish -> sent", b, 0.35),
        rate_row(f"(c) drain a {args.backlog:,}-event backlog", c, 0.90),
        rate_row("    (backlog build: money append only)", build),
        ("(d) peak RSS of the agent process", f"{rss[worst]:.1f} MiB", "", "<= 48 MiB",
         verdict(rss[worst] <= 48), ""),
    ]
    if link_rss[link_worst]:
        rows.append(("(d)   of its link process", f"{link_rss[link_worst]:.1f} MiB", "",
                     "<= 48 MiB", verdict(link_rss[link_worst] <= 48), ""))
    rows += [
        ("(e) disk written per money event", f"{b['bytes_per_event']:,.0f} B", "", "report",
         "", ""),
        ("(e)   of which the append", f"{build['bytes_per_event']:,.0f} B", "", "report", "", ""),
        ("(e)   with a single producer", f"{single['bytes_per_event']:,.0f} B", "", "report",
         "", ""),
        ("(e) disk written per telemetry event", f"{e['bytes_per_event']:,.0f} B", "", "report",
         "", ""),
    ]
    print(f"event spine: events of {raw[0]['size']:.0f} B, {args.events:,} for (a) and (b), "
          f"{args.producers} producer threads, in-flight window {cfg.mqtt.inflight}, Mosquitto "
          f"with TLS client certificates on 127.0.0.1, {os.cpu_count()} CPUs")
    print(f"{'measure':42} {'result':>12} {'vs (a)':>6}  {'target':9} {'':6} {'CPU us/ev':>9}")
    for name, value, ratio, target, ok, cpu in rows:
        print(f"{name:42} {value:>12} {ratio:>6}  {target:9} {ok:6} {cpu:>9}")
    notes = f"""\
Each of (a), (b), (c): the median of {len(raw)} rounds of a, b, c (ev/s: a \
{rates(raw)}; b {rates(pipe)}; c {rates(drain)}).
(a) first publish to last PUBACK.
(b) first append to the last row in state 'sent' (PUBACK received and recorded); the last \
PUBACK came at {b['to_last_puback_s']:.2f} of {b['seconds']:.2f} s. Money events: sealed, signed, \
synchronous=FULL, group commit.
(c) connect to the last row in state 'sent'; last PUBACK at {c['to_last_puback_s']:.2f} of \
{c['seconds']:.2f} s; built beforehand at {build['rate']:,.0f} ev/s by another agent process. \
{link_start_note(c)}
(d) VmHWM of each agent process: {', '.join(f"{k} {v:.1f}" for k, v in rss.items())} MiB. \
{link_rss_note(link_rss, together, pss_together)}
(e) /proc/self/io write_bytes (less cancelled writes) of the agent process, until the outbox \
is closed (so the WAL checkpoint counts). Money: {args.events:,} events through the whole \
pipeline ({args.events / b['commits']:.1f} per commit); append only: the backlog build; single \
producer: {SINGLE_EVENTS:,} events through the pipeline from one thread, one per commit \
({single['rate']:,.0f} ev/s). Telemetry: {telemetry_n} events through the \
pipeline, committed in [outbox] telemetry_batch_ms windows ({telemetry_n / e['commits']:.1f} \
per commit, {e['rate']:,.0f} ev/s).
CPU us/ev: user + system CPU per event of the measuring process, all its threads, and of \
its link process.
Not measured: the ingest (no ingest runs; its acks and the pruning they cause are outside \
every figure). Whole run {total_s:.0f} s."""
    print()
    for note in notes.splitlines():
        print(textwrap.fill(note, width=100, subsequent_indent="    "))
    return 0


if __name__ == "__main__":
    sys.exit(main())

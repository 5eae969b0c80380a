"""The README's main job: a complete station on simulated hardware, with a local broker.

Everything runs on this machine under a work folder (default `var/demo`): Mosquitto with TLS on
a free loopback port, the bank's ingest (`cocoon-ingest run --echo`) and the station's agent
(`cocoon-agent station`) as separate processes, as in the field. The hardware is simulated: a
private pcscd with a virtual reader holding a clerk's staff card and farmers' CPU cards, and a
Yaohua XK3190-A9 indicator on a pty. A scripted clerk records a few purchases; each event is
printed as the ingest verifies and acknowledges it. The clerk's screen is served by the agent
(its address is printed: open it in a browser to watch, or to sell by hand); the scripted clerk
uses the same HTTP interface as the page. Ctrl-C stops everything; running it again continues
the same chain, the same vouchers and the same cards.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from agent.contract.commands import make_command
from agent.contract.pricing.errors import PricingError
from agent.contract.signing import Verifier, load_signer
from agent.demo.bench import READER, SAM_READER, Bench
from agent.demo.clerk import Clerk, Screen
from agent.demo.sandbox import Site
from agent.demo.screen_client import ScreenClient
from agent.station.price_store import PriceTableStore

DEVICE = "station-01"
EXAMPLE_TABLE = Path(__file__).resolve().parents[2] / "config" / "price-table.example.json"


def _spawn(args: list[str], **kw) -> subprocess.Popen:
    # A process group of its own: a Ctrl-C at the terminal reaches the demo alone, which stops
    # its services in order (SIGTERM, as systemd would).
    return subprocess.Popen(args, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            process_group=0, **kw)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def terminate(procs: list[subprocess.Popen], timeout_s: float = 15) -> None:
    """Ask our service processes to stop (SIGTERM, as systemd would); kill the ones that hang."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def print_ingest_status(bindir: Path, site: Site) -> None:
    """What the bank's side holds at the end: `cocoon-ingest status`, and `purchases` (each
    recomputed by the bank)."""
    for command in ("status", "purchases"):
        out = subprocess.run([str(bindir / "cocoon-ingest"), "--config",
                              str(site.ingest_config), "--log-level", "warning", command],
                             capture_output=True, text=True)
        print("\n" + out.stdout, end="")


def install_price_table(data_dir: Path, now: datetime, backend_key: Path,
                        device: str = DEVICE) -> dict | None:
    """Give the station a table in force now, signed by the backend as its `price_table.set`
    command would be (the backend's job in the field); the signed command, which the bank
    keeps too (`cocoon-ingest price-tables add`), or None when one was in force already."""
    signer = load_signer(backend_key)
    store = PriceTableStore(data_dir, Verifier.from_pem(signer.public_key_pem()), device)
    try:
        store.in_force(now)
        return None
    except PricingError:
        pass
    doc = json.loads(EXAMPLE_TABLE.read_text(encoding="utf-8"))
    try:
        doc["version"] = store.current(doc["season"]).version + 1
    except PricingError:
        pass
    doc["valid_from"] = (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc["valid_until"] = (now + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    signed = make_command(device, "price_table.set", doc, signer, now=now)
    store.install(signed)
    return signed


def give_the_bank(site: Site, signed: dict | None) -> None:
    """The bank keeps the backend's table too, to recompute every purchase with it."""
    if signed is None:
        return
    path = site.root / "price-tables" / f"{signed['body']['id']}-v{signed['body']['version']}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(signed), encoding="utf-8")
    subprocess.run([str(Path(sys.executable).parent / "cocoon-ingest"), "--config",
                    str(site.ingest_config), "--log-level", "warning", "price-tables", "add",
                    str(path)], check=True, capture_output=True)


def open_screen(client: ScreenClient, stop: threading.Event, timeout_s: float = 30) -> bool:
    """Load the clerk's page as a browser would, once the agent serves it."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            client.open(timeout=5)
            return True
        except OSError:
            stop.wait(0.2)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="var/demo", help="work folder (default: var/demo)")
    parser.add_argument("--sales", type=int, default=3,
                        help="purchases the scripted clerk records (default: 3)")
    parser.add_argument("--interval", type=float, default=2.0,
                        help="seconds between purchases (default: 2)")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many seconds (default: run until Ctrl-C)")
    parser.add_argument("--exit-when-acknowledged", action="store_true",
                        help="stop as soon as the ingest has acknowledged every purchase")
    parser.add_argument("--screen-port", type=int, default=0,
                        help="the clerk's screen's port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--language", choices=("zh-CN", "en"), default="zh-CN",
                        help="the clerk's screen's language (default: zh-CN)")
    args = parser.parse_args(argv)

    stop = threading.Event()
    # Until the services run, a Ctrl-C is held back: the bench's pcscd, socat and broker,
    # started now, keep it ignored and are stopped in order at the end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    root = Path(args.dir).resolve()
    site = Site.create(root)
    bench = Bench(root / "bench")
    bench.start()
    site.add_device(
        DEVICE,
        station={"confirming_s": 120},
        card={"reader": READER, "issuer_public_key_file": str(bench.issuer_pem),
              "sam_reader": SAM_READER},
        scale={"port": str(bench.scale_port), "protocol": "xk3190-a9", "id": "bench-1",
               "division_g": "10", "capacity_g": "150000", "tare_g": 500, "stable_count": 5,
               "stable_window_s": 0.5},
        printer={"url": f"file://{root / 'vouchers.escpos'}"},
        screen={"port": args.screen_port or free_port(), "language": args.language},
    )
    broker = site.start_broker()
    give_the_bank(site, install_price_table(site.devices[DEVICE].parent / "data",
                                            datetime.now(timezone.utc), site.backend_key))
    print(f"broker  : mosquitto on {broker.host}:{broker.port} (TLS, client certificates)")
    print(f"cards   : virtual reader '{bench.pcscd.reader(READER).name}' on a private pcscd, "
          f"PSAM (SM4) in '{bench.pcscd.reader(SAM_READER).name}'")
    print(f"scale   : XK3190-A9 simulator on {bench.scale_port}")
    print(f"agent   : {site.devices[DEVICE]}")
    port = site.device_sections[DEVICE]["screen"]["port"]
    screen_url = f"http://127.0.0.1:{port}/"
    print(f"screen  : {screen_url} (the farmer's display: {screen_url}farmer)")
    bindir = Path(sys.executable).parent
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    print(f"logs    : {logs}; Ctrl-C to stop\n")
    ingest = _spawn([str(bindir / "cocoon-ingest"), "--config", str(site.ingest_config),
                     "--log-level", "warning", "run", "--echo"],
                    stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    agent_log = open(logs / "agent.log", "a", encoding="utf-8")  # noqa: SIM115 (process-long)
    agent = subprocess.Popen(
        [str(bindir / "cocoon-agent"), "--config", str(site.devices[DEVICE]), "run"],
        stdin=subprocess.DEVNULL, stdout=agent_log, stderr=agent_log, text=True,
        process_group=0)

    interrupted = threading.Event()

    def on_signal(*_) -> None:
        interrupted.set()
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print_lock = threading.Lock()

    def say(line: str) -> None:
        with print_lock:
            print(line, flush=True)

    purchases: set[int] = set()
    acked = [0]

    def pump_ingest():
        for line in ingest.stdout:
            parts = line.split()
            if parts[:1] == ["verified"] and "purchase.recorded" in parts:
                purchases.add(int(parts[3]))
            elif parts[:1] == ["acked"]:
                acked[0] = max(acked[0], int(parts[-1]))
            say(f"bank  <- {line.rstrip()}")

    screen = Screen()
    client = ScreenClient(screen_url)
    threading.Thread(target=pump_ingest, daemon=True).start()
    clerk = Clerk(bench, screen, client, lambda text: say(f"clerk :  {text}"), stop=stop)

    def work():
        if not open_screen(client, stop):
            if not stop.is_set():
                say("clerk :  the station screen did not come up; see the logs")
            return
        client.follow(screen.feed, stop)
        if not clerk.wait(lambda s: s.step == "idle", 30):
            if not stop.is_set():
                say("clerk :  the station screen did not come up; see the logs")
            return
        if not clerk.sign_in():
            return
        for i in range(args.sales):
            if stop.is_set():
                return
            clerk.sell(bench.farmers[i % len(bench.farmers)], stop)
            stop.wait(args.interval)

    def clerk_at_work():
        try:
            work()
        except (RuntimeError, OSError) as exc:
            if not stop.is_set():       # the bench going down under a stopping demo is no news
                raise
            say(f"clerk :  stopped ({exc})")

    worker = threading.Thread(target=clerk_at_work, daemon=True)
    worker.start()
    deadline = None if args.duration is None else time.monotonic() + args.duration
    code = 0
    while not stop.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            break
        if args.exit_when_acknowledged and not worker.is_alive() and clerk.vouchers and \
                len(purchases) >= len(clerk.vouchers) and acked[0] >= max(purchases):
            break
        for name, proc in (("ingest", ingest), ("agent", agent)):
            if proc.poll() is not None:
                say(f"{name} exited with status {proc.returncode}; see {logs}")
                stop.set()
                code = 1
        stop.wait(0.2)
    stop.set()
    worker.join(timeout=20)
    terminate([agent, ingest])
    bench.stop()
    broker.stop()
    print_ingest_status(bindir, site)
    print(f"purchases recorded this run: {len(clerk.vouchers)} "
          f"({', '.join(clerk.vouchers) or 'none'}); vouchers printed to "
          f"{root / 'vouchers.escpos'}")
    if args.sales and not clerk.vouchers and not interrupted.is_set():
        code = code or 1
    return code


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the clerk's screen's memory: the station agent's RSS without [screen], and with
it while one Chromium shows the clerk's screen (the budget: +15 MiB).

    .venv/bin/python bench/screen.py [--seconds 20]

The production path on simulated hardware (agent.demo: a private pcscd with virtual cards, an
XK3190-A9 on a pty, Mosquitto with TLS, the bank's ingest): `cocoon-agent run` is started twice
on the same station, and its resident set (VmRSS of the agent's process; the link process is
another process, the same in both runs) is sampled for `--seconds` once it is up, the highest
sample kept. With the screen, a headless Chromium (Debian's, through Playwright) keeps the
clerk's page open, following the event stream, while the scale's load changes every second.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.demo.bench import READER, Bench
from agent.demo.sandbox import Site
from agent.demo.station import free_port, install_price_table

DEVICE = "station-01"
BIN = Path(sys.executable).parent


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run(site: Site, bench: Bench, root: Path, seconds: float, screen: bool) -> int:
    port = free_port()
    site.add_device(
        DEVICE, station={},
        card={"reader": READER, "issuer_public_key_file": str(bench.issuer_pem)},
        scale={"port": str(bench.scale_port), "protocol": "xk3190-a9", "id": "bench-1",
               "division_g": "10", "capacity_g": "150000", "tare_g": 500},
        printer={"url": f"file://{root / 'vouchers.escpos'}"},
        **({"screen": {"port": port}} if screen else {}))
    install_price_table(site.devices[DEVICE].parent / "data", datetime.now(timezone.utc))
    log = open(root / f"agent-{'screen' if screen else 'plain'}.log", "w")  # noqa: SIM115
    agent = subprocess.Popen([str(BIN / "cocoon-agent"), "--config", str(site.devices[DEVICE]),
                              "run"], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    browser = pw = None
    try:
        time.sleep(3)
        if screen:
            from playwright.sync_api import sync_playwright

            pw = sync_playwright().start()
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 800, "height": 480})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.body.dataset.phase === 'idle'", timeout=15000)
        peak = 0
        deadline = time.monotonic() + seconds
        load = 0
        while time.monotonic() < deadline:
            load = (load + 7) % 60
            bench.load_platform(Decimal(load))
            time.sleep(1.0)
            peak = max(peak, rss_kib(agent.pid))
        return peak
    finally:
        if browser is not None:
            browser.close()
            pw.stop()
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cocoon-bench-screen-") as tmp:
        root = Path(tmp)
        site = Site.create(root)
        bench = Bench(root / "bench")
        bench.start()
        broker = site.start_broker()
        ingest = subprocess.Popen([str(BIN / "cocoon-ingest"), "--config",
                                   str(site.ingest_config), "--log-level", "warning", "run"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            plain = run(site, bench, root, args.seconds, screen=False)
            with_screen = run(site, bench, root, args.seconds, screen=True)
        finally:
            ingest.send_signal(signal.SIGTERM)
            ingest.wait(timeout=30)
            bench.stop()
            broker.stop()
    print(f"agent RSS without [screen]            {plain / 1024:7.1f} MiB")
    print(f"agent RSS with the screen and Chromium {with_screen / 1024:7.1f} MiB")
    print(f"difference                             {(with_screen - plain) / 1024:+7.1f} MiB "
          "(budget +15 MiB)")


if __name__ == "__main__":
    main()

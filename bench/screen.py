"""Benchmark of the clerk's screen: the station agent's RSS without [screen] and with it while
one Chromium shows the clerk's screen (the budget: +15 MiB), and the weight's way to the screen
(the budget: p99 200 ms).

    .venv/bin/python bench/screen.py [--seconds 20] [--changes 100]

The production path on simulated hardware (agent.demo: a private pcscd with virtual cards, an
XK3190-A9 on a pty, Mosquitto with TLS, the bank's ingest): `cocoon-agent run` is started twice
on the same station, and its resident set (VmRSS of the agent's process; the link process is
another process, the same in both runs) is sampled for `--seconds` once it is up, the highest
sample kept. With the screen, a headless Chromium (Debian's, through Playwright) keeps the
clerk's page open, following the event stream, while the scale's load changes every second.

Latency: the indicator's frames are then written by this script itself on the scale's pty (20
frames a second, as an XK3190-A9 sends them); each time the weight changes, the moment just
before the first frame with the new weight is written is kept, and the page records (a
MutationObserver, `Date.now()`, the same clock) when the net weight it shows changes to it.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.demo.bench import READER, Bench
from agent.demo.sandbox import Site
from agent.demo.station import free_port, install_price_table
from drivers.scale import xk3190_a9

DEVICE = "station-01"
BIN = Path(sys.executable).parent


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


OBSERVE_JS = """() => {
  window.__changes = [];
  const el = document.getElementById("net-value");
  new MutationObserver(() => window.__changes.push([Date.now(), el.textContent]))
    .observe(el, {childList: true, characterData: true, subtree: true});
}"""


class FrameWriter:
    """Writes XK3190-A9 frames on the simulator's end of the pty, 20 a second; `change()` sets
    a new weight and returns the wall-clock moment its first frame is written."""

    def __init__(self, path: Path):
        self.fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)
        self.weight = Decimal("0.00")
        self.pending: threading.Event | None = None
        self.written_at = 0.0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            with self.lock:
                frame = xk3190_a9.encode(self.weight, 2)
                pending, self.pending = self.pending, None
                if pending is not None:
                    self.written_at = time.time()
                os.write(self.fd, frame)
            if pending is not None:
                pending.set()
            next_at += 0.05
            time.sleep(max(0.0, next_at - time.monotonic()))

    def change(self, weight: Decimal) -> float:
        done = threading.Event()
        with self.lock:
            self.weight, self.pending = weight, done
        done.wait(2)
        return self.written_at

    def close(self) -> None:
        self.stop.set()
        time.sleep(0.1)
        os.close(self.fd)


READY_JS = """
new MutationObserver((_, obs) => {
  if (document.body && document.body.dataset.phase && window.__ready === undefined) {
    window.__ready = performance.now();
    obs.disconnect();
  }
}).observe(document, {attributes: true, subtree: true, attributeFilter: ["data-phase"]});
"""


def latency(site: Site, bench: Bench, root: Path, changes: int,
            loads: int = 20) -> tuple[list[float], list[float]]:
    """Milliseconds from a new weight's first byte on the pty to the page showing it; and of
    `loads` page loads, from the navigation's start to the page showing the station's state
    (its first state from the event stream drawn)."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    site.add_device(
        DEVICE, station={},
        card={"reader": READER, "issuer_public_key_file": str(bench.issuer_pem)},
        scale={"port": str(bench.scale_port), "protocol": "xk3190-a9", "id": "bench-1",
               "division_g": "10", "capacity_g": "150000", "tare_g": 500},
        screen={"port": port, "language": "en"})
    bench.scale.stop()                      # this script writes the indicator's frames now
    writer = FrameWriter(bench._sim_port)
    log = open(root / "agent-latency.log", "w")  # noqa: SIM115
    agent = subprocess.Popen([str(BIN / "cocoon-agent"), "--config", str(site.devices[DEVICE]),
                              "run"], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"])
    try:
        page = browser.new_context(viewport={"width": 800, "height": 480},
                                   bypass_csp=True).new_page()
        time.sleep(2)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("document.body.dataset.phase === 'idle'", timeout=15000)
        page.evaluate(OBSERVE_JS)
        written = []
        weight = Decimal("20.00")
        for _ in range(changes):
            weight += Decimal("0.37")
            written.append((writer.change(weight), f"{weight - Decimal('0.5'):.3f}"))
            time.sleep(0.25)
        time.sleep(1)
        seen = page.evaluate("window.__changes")
        page.add_init_script(READY_JS)
        load_ms = []
        for _ in range(loads):
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("window.__ready !== undefined", timeout=15000)
            load_ms.append(page.evaluate("window.__ready"))
    finally:
        browser.close()
        pw.stop()
        writer.close()
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
        log.close()
    out = []
    for at, text in written:
        shown = next((ms for ms, t in seen if t.replace(",", "") == text), None)
        if shown is not None:
            out.append(shown - at * 1000)
    return out, load_ms


def run(site: Site, bench: Bench, root: Path, seconds: float, screen: bool) -> int:
    port = free_port()
    site.add_device(
        DEVICE, station={},
        card={"reader": READER, "issuer_public_key_file": str(bench.issuer_pem)},
        scale={"port": str(bench.scale_port), "protocol": "xk3190-a9", "id": "bench-1",
               "division_g": "10", "capacity_g": "150000", "tare_g": 500},
        printer={"url": f"file://{root / 'vouchers.escpos'}"},
        **({"screen": {"port": port}} if screen else {}))
    install_price_table(site.devices[DEVICE].parent / "data", datetime.now(timezone.utc),
                        site.backend_key)
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
    parser.add_argument("--changes", type=int, default=100)
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
            delays, loads = latency(site, bench, root, args.changes)
        finally:
            ingest.send_signal(signal.SIGTERM)
            ingest.wait(timeout=30)
            bench.stop()
            broker.stop()
    print(f"agent RSS without [screen]            {plain / 1024:7.1f} MiB")
    print(f"agent RSS with the screen and Chromium {with_screen / 1024:7.1f} MiB")
    print(f"difference                             {(with_screen - plain) / 1024:+7.1f} MiB "
          "(budget +15 MiB)")
    if delays:
        ordered = sorted(delays)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        print(f"weight on the pty -> page's DOM: {len(delays)}/{args.changes} changes seen, "
              f"median {statistics.median(delays):.0f} ms, p99 {p99:.0f} ms, "
              f"max {max(delays):.0f} ms (budget p99 200 ms)")
    if loads:
        print(f"page load to the station's state shown: {len(loads)} loads, median "
              f"{statistics.median(loads):.0f} ms, max {max(loads):.0f} ms (budget 300 ms)")


if __name__ == "__main__":
    main()

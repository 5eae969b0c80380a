"""A station made by release 0.1.0, brought up and sold at, in a process of its own.

    python -m tests.support.upgrade_station SITE direct
    python -m tests.support.upgrade_station SITE release OLD_TREE VENDOR_KEY BUNDLE ROOT

Copies tests/fixtures/upgrade-0.1.0/site to SITE (which must not exist), issues certificates,
starts the broker, the bank's ingest and the bench (a private pcscd with the fixture's cards,
a pty scale), then either sells once with this version's `cocoon-agent station` (`direct`), or
lets the previous release's own updater install BUNDLE under ROOT
(tests/support/previous_release.py) and sells once with the release it confirmed (`release`).
Waits until the bank has verified and acknowledged the sale, stops everything and prints one
JSON line: the voucher, and the updater's result.

A process of its own because libpcsclite reads its socket's path once per process: the bench's
pcscd cannot be the test session's.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

from agent.demo.bench import Bench
from agent.demo.console_clerk import Clerk, Screen
from agent.demo.sandbox import Site
from agent.demo.station import install_price_table, terminate
from tests.support.running import BIN, ingest_device, ingest_store_rows
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parent.parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "upgrade-0.1.0"
DEVICE = "station-01"


class OldStation:
    """The fixture's site under `root`: broker, bank, bench and the device's own files."""

    def __init__(self, root: Path):
        shutil.copytree(FIXTURE / "site", root)
        for key in root.rglob("*.key"):
            key.chmod(0o600)     # git keeps no modes; the agent refuses readable keys
        self.root = root
        self.site = Site.create(root)            # fresh CA, broker and certificates
        self.bench = Bench(root / "bench")       # the fixture's cards and issuer key
        self.config = root / "devices" / DEVICE / "agent.toml"
        self.data = self.config.parent / "data"
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        self.bench.start()
        broker = self.site.start_broker()        # writes the ingest's file for this broker
        self.site.ca.issue(DEVICE)
        template = self.config.read_text(encoding="utf-8")
        self.config.write_text(template.replace("@SITE@", str(self.root))
                               .replace("@PORT@", str(broker.port)), encoding="utf-8")
        self.ingest = self._spawn([str(BIN / "cocoon-ingest"), "--config",
                                   str(self.site.ingest_config), "run"])

    def send_price_table(self) -> None:
        """The backend's job after an update: this version keeps the tables as the signed
        commands that brought them, and refuses the previous release's unsigned ones (kept
        aside), so the backend sends a table in force again."""
        install_price_table(self.data, datetime.now(timezone.utc), self.site.backend_key)

    def _spawn(self, argv: list[str], **kw) -> subprocess.Popen:
        log = open(self.root / f"{Path(argv[0]).name}-{len(self.procs)}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(argv, stderr=log, **{"stdin": subprocess.DEVNULL,
                                                     "stdout": subprocess.DEVNULL, **kw})
        log.close()
        self.procs.append(proc)
        return proc

    def sell_once(self, argv_prefix: list[str], **kw) -> str:
        """Start the station screen with `argv_prefix` (this version's agent), sign in, sell to
        the first farmer; the voucher number."""
        agent = self._spawn([*argv_prefix, "--config", str(self.config), "station"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            bufsize=1, **kw)
        screen, said = Screen(), []

        def pump():
            for line in agent.stdout:
                screen.feed(line)

        def type_line(line: str) -> None:
            agent.stdin.write(line + "\n")
            agent.stdin.flush()

        threading.Thread(target=pump, daemon=True).start()
        clerk = Clerk(self.bench, screen, type_line, said.append, seed=7)
        assert screen.wait(lambda s: s.step == "idle", 60), f"no screen; {self.logs()}"
        assert clerk.sign_in(), said
        voucher = clerk.sell(self.bench.farmers[0], threading.Event())
        assert voucher, f"{said}\n{self.logs()}"
        type_line("q")
        return voucher

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.root.glob("*.log")))

    def stop(self) -> None:
        terminate(self.procs)
        self.bench.stop()
        self.site.broker.stop()

    def wait_acknowledged(self, voucher: str) -> None:
        """Until the bank has verified the sale with `voucher` and acknowledged it."""
        def sale():
            return next((r for r in ingest_store_rows(self.site, DEVICE)
                         if r["type"] == "purchase.recorded"
                         and json.loads(r["payload"])["body"]["voucher"] == voucher), None)
        row = wait_for(sale, 60, what=f"the bank verifying {voucher}")
        wait_for(lambda: ingest_device(self.site, DEVICE)["watermark"] >= row["seq"], 60,
                 what="the bank's acknowledgement")


def main() -> None:
    root, mode, *rest = sys.argv[1:]
    station = OldStation(Path(root))
    result: dict = {}
    try:
        station.start()
        if mode == "direct":
            station.send_price_table()
            voucher = station.sell_once([str(BIN / "cocoon-agent")])
        else:
            old_tree, vendor_key, bundle, release_root = map(Path, rest)
            with station.config.open("a", encoding="utf-8") as toml:  # as its technician did
                toml.write(f'\n[update]\nroot = "{release_root}"\nvendor_public_key_file = '
                           f'"{vendor_key.with_suffix(".pem")}"\nhealth_deadline_s = 60\n')
            done = subprocess.run(
                [sys.executable, str(REPO / "tests" / "support" / "previous_release.py"),
                 str(station.config), str(old_tree), str(vendor_key), str(bundle)],
                env={**os.environ, "PYTHONPATH": str(old_tree)}, cwd=old_tree,
                capture_output=True, text=True, timeout=240)
            if done.returncode != 0:
                raise SystemExit(f"the previous release's updater failed:\n"
                                 f"{done.stderr[-3000:]}\n{station.logs()}")
            result["release"] = json.loads(done.stdout.strip().splitlines()[-1])
            # The release the updater confirmed, started as the service starts it.
            current = (release_root / "current").resolve()
            station.send_price_table()
            voucher = station.sell_once([sys.executable, "-m", "agent.cli"], cwd=current,
                                        env={**os.environ, "PYTHONPATH": str(current)})
        station.wait_acknowledged(voucher)
        result["voucher"] = voucher
    finally:
        station.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()

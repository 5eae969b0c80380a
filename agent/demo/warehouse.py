"""The supervised warehouse on simulated hardware, with a local broker and the bank's ingest.

Everything runs on this machine under a work folder (default `var/demo-warehouse`): Mosquitto
with TLS on a free loopback port, the bank's ingest (`cocoon-ingest run --echo`) and the
warehouse's agent (`cocoon-agent run` with a `[warehouse]` section) as separate processes, as in
the field. The hardware is simulated: a "BB ... 7E" UHF module (drivers.tags.simulator) reads a
field of tagged bales onto one end of a socat pty pair, and the agent opens the other end as it
would /dev/ttyUSB0; a field box's co-processor (firmware_bridge.simulator) on a second pty adds
a gate antenna read through the firmware bridge; GPIO pins are gpiozero's mock pins; the SHT3x
is the simulated chip (`climate_bus = "sim"`).

The script then plays the people around the warehouse: a lot of bales arrives and is received
(`cocoon-agent warehouse receive`), the bank pledges it (a signed `pledge` through
`cocoon-ingest send-command`), and one pledged bale is carried out without a release; the
`custody.breach` alert is shown as the ingest verifies and acknowledges it. The bales are kept
in a file in the work folder, so a second run finds the first run's bales still there (and the
stolen one still gone) and adds a new lot.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from datetime import datetime
from pathlib import Path

import tomlkit

from agent.demo.sandbox import Site
from agent.demo.station import free_port, print_ingest_status, terminate
from agent.screen.config import LANGUAGES
from drivers.tags.sim_field import TagField
from drivers.tags.simulator import BB7ESimulator
from ingest.config import load_ingest_config

DEVICE = "warehouse-01"
READER = "dock"
GATE = "gate"                     # the field box's antenna by the loading door
LOT_TAGS = 6
LOOSE_TAGS = 3
WAREHOUSE = {
    "departed_after_s": 5,        # short for the demo; 600 s in the field
    "check_interval_s": 1,
    "reader_silent_s": 30,
    "snapshot_interval_s": 60,
    "gpio_factory": "mock",
    "pull_up": False,             # mock pins read low: doors shut, enclosure closed
    "tamper_pin": 6,
    "power_pin": 13,
    "power_lost_level": "high",   # a UPS whose "on battery" line goes high
    "siren_pin": 19,
    "light_pin": 26,
    "climate_bus": "sim",
    "climate_poll_s": 2,
    "climate_telemetry_s": 30,
}


class Bales:
    """The tagged bales in the store room, kept in `bales.json` between runs."""

    def __init__(self, path: Path, field: TagField):
        self.path, self.field = path, field
        self.saved: list[dict] = json.loads(path.read_text()) if path.exists() else []
        for bale in self.saved:
            field.add(bale["epc"], bale["antenna"], bale["rssi"])

    def add(self, count: int, antenna: int, rng: random.Random) -> list[str]:
        epcs = []
        for _ in range(count):
            epc = "e280" + rng.randbytes(10).hex()
            rssi = rng.randint(-66, -48)
            self.field.add(epc, antenna, rssi)
            self.saved.append({"epc": epc, "antenna": antenna, "rssi": rssi})
            epcs.append(epc)
        self.save()
        return epcs

    def take_out(self, epc: str) -> None:
        self.field.remove(epc)
        self.saved = [b for b in self.saved if b["epc"] != epc]
        self.save()

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.saved, indent=1))
        tmp.replace(self.path)


class Module:
    """The simulated UHF module on a socat pty pair under `root`."""

    def __init__(self, root: Path, field: TagField):
        self.device = root / "tag-reader"          # the agent's end of the cable
        self.peer = root / "tag-module"
        self.field = field
        self.socat: subprocess.Popen | None = None
        self.sim: BB7ESimulator | None = None

    def start(self) -> None:
        self.socat = _pty_pair(self.peer, self.device, "the tag reader")
        self.sim = BB7ESimulator(str(self.peer), self.field, rounds_per_s=4).start()

    def stop(self) -> None:
        if self.sim is not None:
            self.sim.stop()
        if self.socat is not None and self.socat.poll() is None:
            self.socat.terminate()
            self.socat.wait(5)


class FieldBox:
    """The field box's co-processor (firmware_bridge.simulator) on its own socat pty pair: a
    gate antenna by the loading door that weakly sees every bale in the field, read by the
    agent through the firmware bridge (reader protocol `coproc`)."""

    def __init__(self, root: Path, field: TagField):
        self.device = root / "field-box"           # the agent's end: the box's UART
        self.peer = root / "field-box-sim"
        self.field = field
        self.socat: subprocess.Popen | None = None
        self.box = None
        self._stop = threading.Event()

    def start(self) -> None:
        from firmware_bridge.simulator import Coprocessor

        self.socat = _pty_pair(self.peer, self.device, "the field box")
        self.box = Coprocessor(str(self.peer), firmware="1.4.2").start()
        threading.Thread(target=self._gate, daemon=True, name="field-box-gate").start()

    def _gate(self) -> None:
        while not self._stop.wait(0.5):
            for epc in self.field.epcs():
                self.box.tag_seen(epc.hex(), rssi=-79, antenna=1)

    def stop(self) -> None:
        self._stop.set()
        if self.box is not None:
            self.box.stop()
        if self.socat is not None and self.socat.poll() is None:
            self.socat.terminate()
            self.socat.wait(5)


def _pty_pair(peer: Path, device: Path, what: str) -> subprocess.Popen:
    socat = shutil.which("socat")
    if socat is None:
        raise RuntimeError("socat is missing: install the Debian package socat "
                           "(scripts/bootstrap does)")
    for link in (device, peer):
        link.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={peer}", f"pty,raw,echo=0,link={device}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while not (device.exists() and peer.exists()):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"socat did not create {what}'s pty pair")
        time.sleep(0.02)
    return proc


def configure(site: Site, module: Module, box: FieldBox) -> Path:
    """The device's agent.toml: the Site's sections plus the reader and the door contacts
    (tables the Site's writer does not nest)."""
    path = site.devices[DEVICE]
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    doc["warehouse"]["doors"] = {"main": 5}
    doc["warehouse"]["readers"] = [{"name": READER, "port": str(module.device),
                                    "protocol": "bb7e", "silence_s": 5},
                                   {"name": GATE, "port": str(box.device),
                                    "protocol": "coproc", "silence_s": 5}]
    path.write_text(tomlkit.dumps(doc), encoding="utf-8")
    return path


class Ledger:
    """What the ingest reports, line by line: verified events and acknowledgements."""

    def __init__(self):
        self.verified: list[tuple[int, str]] = []
        self.acked = 0
        self.cond = threading.Condition()

    def feed(self, line: str) -> None:
        parts = line.split()
        with self.cond:
            if parts[:1] == ["verified"] and len(parts) >= 5 and parts[1] == DEVICE:
                self.verified.append((int(parts[3]), parts[4]))
            elif parts[:1] == ["acked"] and parts[1] == DEVICE:
                self.acked = max(self.acked, int(parts[-1]))
            self.cond.notify_all()

    def seqs(self, type_: str, after: int = 0) -> list[int]:
        with self.cond:
            return [s for s, t in self.verified if t == type_ and s > after]

    def wait(self, predicate, timeout: float, stop: threading.Event):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not stop.is_set():
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.2))
        return None


def stored_event(store: Path, seq: int) -> dict | None:
    """An event as the ingest stored it (after verifying its signature and chain)."""
    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)) as conn:
        row = conn.execute("SELECT payload FROM events WHERE device=? AND seq=?",
                           (DEVICE, seq)).fetchone()
    return json.loads(row[0]) if row else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="var/demo-warehouse",
                        help="work folder (default: var/demo-warehouse)")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many seconds (default: run until Ctrl-C)")
    parser.add_argument("--dashboard-port", type=int, default=0,
                        help="the dashboard's port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--language", choices=LANGUAGES, default="zh-CN",
                        help="the dashboard's language (default: zh-CN)")
    parser.add_argument("--exit-when-acknowledged", action="store_true",
                        help="stop as soon as the ingest has acknowledged the breach")
    args = parser.parse_args(argv)

    root = Path(args.dir).resolve()
    site = Site.create(root)
    field = TagField(2, seed=int(time.time()), miss_rate=0.2, cross_read_rate=0.05)
    first_run = not (root / "bales.json").exists()
    bales = Bales(root / "bales.json", field)
    rng = random.Random()
    if first_run:
        bales.add(LOOSE_TAGS, 2, rng)        # loose bales, in no lot
    lot_epcs = bales.add(LOT_TAGS, 1, rng)
    arrivals = LOT_TAGS + (LOOSE_TAGS if first_run else 0)
    module = Module(root, field)
    module.start()
    box = FieldBox(root, field)
    box.start()
    site.add_device(DEVICE, warehouse=WAREHOUSE,
                    screen={"port": args.dashboard_port or free_port(), "language": args.language})
    broker = site.start_broker()
    config = configure(site, module, box)
    bindir = Path(sys.executable).parent
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    print(f"broker  : mosquitto on {broker.host}:{broker.port} (TLS, client certificates)")
    print(f"reader  : BB ... 7E module simulator ({len(field.epcs())} bales, 2 antennas) on "
          f"{module.device}")
    print(f"field box: co-processor simulator (firmware 1.4.2) on {box.device}, its gate "
          "antenna read through the firmware bridge")
    print("pins    : gpiozero mock pins (door 5, tamper 6, power 13, siren 19, light 26); "
          "climate: simulated SHT3x")
    print(f"agent   : {config}")
    port = site.device_sections[DEVICE]["screen"]["port"]
    print(f"dashboard: http://127.0.0.1:{port}/ (the monitor's dashboard)")
    print(f"logs    : {logs}; Ctrl-C to stop\n")

    ingest = subprocess.Popen(
        [str(bindir / "cocoon-ingest"), "--config", str(site.ingest_config),
         "--log-level", "warning", "run", "--echo"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        bufsize=1)
    agent_log = open(logs / "agent.log", "a", encoding="utf-8")  # noqa: SIM115 (process-long)
    agent = subprocess.Popen([str(bindir / "cocoon-agent"), "--config", str(config), "run"],
                             stdin=subprocess.DEVNULL, stdout=agent_log, stderr=agent_log)

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print_lock = threading.Lock()
    ledger = Ledger()

    def say(line: str) -> None:
        with print_lock:
            print(line, flush=True)

    def pump_ingest():
        for line in ingest.stdout:
            ledger.feed(line)
            say(f"bank  <- {line.rstrip()}")

    def run_cli(who: str, args_: list[str]) -> subprocess.CompletedProcess:
        say(f"{who} $ {' '.join([Path(args_[0]).name, *args_[1:]])}")
        done = subprocess.run(args_, capture_output=True, text=True, timeout=60)
        for line in (done.stdout + done.stderr).splitlines():
            say(f"{who}   {line}")
        return done

    result = {"breach": None}

    def work():
        lot = f"LOT-{datetime.now():%m%d-%H%M%S}"
        say(f"store :  {LOT_TAGS} bales of {lot} are brought in front of antenna 1")
        if not ledger.wait(lambda: len(ledger.seqs("tag.arrived")) >= arrivals, 60, stop):
            say("store :  the agent reported no tags; see the logs")
            return
        received = run_cli("store", [
            str(bindir / "cocoon-agent"), "--config", str(config), "warehouse", "receive",
            "--lot", lot, "--purchase", "station-01/1", "--purchase", "station-01/2",
            "--tags", ",".join(lot_epcs), "--kg", "310.5", "--wait", "30"])
        if received.returncode != 0 or not ledger.wait(
                lambda: ledger.seqs("lot.received"), 30, stop):
            say("store :  the lot was not received; see the logs")
            return
        mark = max(s for s, _ in ledger.verified)
        pledge = {"lots": [lot], "tags": LOT_TAGS, "kg": "310.5", "pledge": f"P-{lot}"}
        sent = run_cli("bank ", [
            str(bindir / "cocoon-ingest"), "--config", str(site.operator_config),
            "--log-level", "warning", "send-command", "--key", str(site.bank_key),
            "--device", DEVICE, "--type", "pledge", "--body", json.dumps(pledge)])
        if sent.returncode != 0 or not ledger.wait(
                lambda: ledger.seqs("command.done", mark), 30, stop):
            say("bank  :  the pledge was not confirmed; see the logs")
            return
        view = [str(bindir / "cocoon-agent"), "--config", str(config), "warehouse", "--once"]
        run_cli("store", view)
        stolen = lot_epcs[0]
        mark = max(s for s, _ in ledger.verified)
        say(f"store :  bale {stolen} of {lot} is carried out by the back door, "
            "with no release from the bank")
        bales.take_out(stolen)
        seqs = ledger.wait(lambda: ledger.seqs("custody.breach", mark), 60, stop)
        if not seqs:
            say("bank  :  no custody.breach arrived; see the logs")
            return
        if not ledger.wait(lambda: ledger.acked >= seqs[0], 30, stop):
            say("bank  :  the breach was not acknowledged; see the logs")
            return
        store = load_ingest_config(site.ingest_config).require_ingest().store_path
        event = stored_event(store, seqs[0]) or {}
        body = event.get("body", {})
        say(f"bank  :  custody.breach seq {seqs[0]} verified (signed by {DEVICE}) and "
            f"acknowledged: bale {body.get('epc')} of lot {body.get('lot')} under pledge "
            f"{body.get('pledge')} left {body.get('location')}: {body.get('reason')}")
        run_cli("store", view)
        result["breach"] = seqs[0]

    threading.Thread(target=pump_ingest, daemon=True).start()
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    deadline = None if args.duration is None else time.monotonic() + args.duration
    code = 0
    while not stop.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            break
        if args.exit_when_acknowledged and not worker.is_alive():
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
    module.stop()
    box.stop()
    broker.stop()
    print_ingest_status(bindir, site)
    if result["breach"] is None:
        print("no custody.breach was acknowledged this run")
        code = code or 1
    else:
        print(f"custody.breach seq {result['breach']} verified and acknowledged by the ingest")
    return code


if __name__ == "__main__":
    sys.exit(main())

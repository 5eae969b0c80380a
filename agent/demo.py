"""The README's main job: a local broker, the bank's ingest and a simulated station agent.

Everything runs on this machine under a work folder (default `var/demo`): the broker on a free
loopback port, `cocoon-ingest run` and `cocoon-agent run` as separate processes, exactly as they
run in the field. Each event is printed as the ingest verifies it, and each ack as it is sent.
Ctrl-C stops everything; running it again continues the same chain.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .sandbox import Site

DEVICE = "station-01"


def _spawn(args: list[str], log_file: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        args,
        stdout=subprocess.PIPE if log_file is None else open(log_file, "ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=log_file is None,
        bufsize=1 if log_file is None else -1,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="var/demo", help="work folder (default: var/demo)")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many seconds (default: run until Ctrl-C)")
    parser.add_argument("--interval", type=float, default=2.0,
                        help="seconds between simulated weighings (default: 2)")
    args = parser.parse_args(argv)

    site = Site.create(Path(args.dir).resolve())
    site.add_device(DEVICE, simulate={"enabled": True, "interval_s": args.interval})
    broker = site.start_broker()
    print(f"broker  : mosquitto on {broker.host}:{broker.port} (TLS, client certificates)")
    print(f"ingest  : {site.ingest_config}")
    print(f"agent   : {site.devices[DEVICE]}")
    bindir = Path(sys.executable).parent
    logs = site.root / "logs"
    logs.mkdir(exist_ok=True)
    ingest = _spawn([str(bindir / "cocoon-ingest"), "--config", str(site.ingest_config),
                     "--log-level", "warning", "run", "--echo"])
    agent = _spawn([str(bindir / "cocoon-agent"), "--config", str(site.devices[DEVICE]), "run"],
                   log_file=logs / "agent.log")
    print(f"logs    : {logs}/agent.log, ingest messages below; Ctrl-C to stop\n")

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def pump():
        for line in ingest.stdout:
            print(f"bank <- {line}", end="", flush=True)

    threading.Thread(target=pump, daemon=True).start()
    deadline = None if args.duration is None else time.monotonic() + args.duration
    code = 0
    while not stop.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            break
        for name, proc in (("ingest", ingest), ("agent", agent)):
            if proc.poll() is not None:
                print(f"{name} exited with status {proc.returncode}; see {logs}", file=sys.stderr)
                stop.set()
                code = 1
        stop.wait(0.2)
    for proc in (agent, ingest):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in (agent, ingest):
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    broker.stop()
    status = subprocess.run([str(bindir / "cocoon-ingest"), "--config", str(site.ingest_config),
                             "--log-level", "warning", "status"], capture_output=True, text=True)
    print("\n" + status.stdout, end="")
    return code


if __name__ == "__main__":
    sys.exit(main())

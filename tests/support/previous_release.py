"""The previous release's own updater installing a newer bundle, as it would on a device.

Run with the previous release's source tree first on PYTHONPATH (tests/test_upgrade.py does),
so that every import below is that version's code, with its own module names:

    python previous_release.py CONFIG OLD_TREE VENDOR_KEY NEW_BUNDLE

1. Signs the previous release's tree into a bundle with the vendor key, unpacks it under the
   [update] root and points `current` at it: what the Debian package did at installation.
2. Starts the service (the previous agent, `run`, from `current`) and waits until it has
   recorded that it started.
3. Installs NEW_BUNDLE with the previous release's Updater: verify, unpack, stop, switch,
   start the new release, and confirm it only once it is healthy, or roll back.
Prints one JSON line: the outcome and the releases the service was started from.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import venv
from pathlib import Path


def quick_venv(release_dir: Path, cfg) -> None:
    """A virtual environment per release without pip: the service runs the release's source
    with the test's interpreter (the package test installs into one with pip)."""
    venv.EnvBuilder(with_pip=False).create(release_dir / ".venv")


class Service:
    """The agent's service: `python -m agent.cli run` from the release `current` points at
    (the module both versions answer to)."""

    def __init__(self, root: Path, config: Path, log: Path):
        self.root, self.config, self.log = root, config, log
        self.proc = None
        self.starts: list[str] = []

    def start(self) -> None:
        release = (self.root / "current").resolve()
        self.starts.append(release.name)
        env = {**os.environ, "PYTHONPATH": str(release)}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "--config", str(self.config), "run"],
                cwd=release, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        self.proc = None


def started_versions(outbox: Path) -> list[str]:
    if not outbox.exists():
        return []
    conn = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute("SELECT payload FROM events WHERE type = 'agent.started' "
                            "ORDER BY seq").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()
    return [json.loads(p)["body"]["version"] for (p,) in rows]


def main() -> None:
    config_path, old_tree, vendor_key, new_bundle = map(Path, sys.argv[1:5])
    # The previous release's modules (ruff cannot tell them from third-party ones).
    from agent.config import load_config  # noqa: I001
    from agent.release_bundle import build_bundle, read_manifest
    from agent.release_update import Updater
    from agent.signing import Verifier, load_signer

    cfg = load_config(config_path)
    update = cfg.section("update")
    service = Service(update.root, config_path, config_path.parent / "service.log")
    updater = Updater(update, cfg, service=service, build_env=quick_venv, poll_s=0.2)
    shipped = update.root.parent / "cocoon-agent-previous.tar.gz"
    build_bundle(old_tree, vendor_key, shipped)
    vendor = Verifier.from_pem(load_signer(vendor_key).public_key_pem())
    manifest = read_manifest(shipped, vendor)
    updater.unpack(shipped, manifest)
    updater.layout.point("current", manifest.version)
    before = len(started_versions(cfg.outbox_path))
    service.start()
    deadline = time.monotonic() + 60
    while len(started_versions(cfg.outbox_path)) <= before:
        if time.monotonic() > deadline or service.proc.poll() is not None:
            service.stop()
            raise SystemExit(f"the previous release did not start; see {service.log}")
        time.sleep(0.1)
    try:
        outcome = updater.install(new_bundle)
    finally:
        service.stop()
    print(json.dumps({"outcome": outcome, "starts": service.starts,
                      "previous": manifest.version,
                      "current": os.readlink(update.root / "current")}))


if __name__ == "__main__":
    main()

"""Self-update: signed bundles verified before unpacking, installed beside the running version,
switched by a symlink rename, confirmed when the new agent publishes, rolled back when not.

A temporary directory stands in for /opt/cocoon-agent; the "service" is a real agent process
started from the release that `current` points at, against the site's Mosquitto with TLS.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import venv
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli.main import cli
from agent.config import load_config
from agent.contract.signing import Verifier, generate_key_file, load_signer
from agent.fleet.release.bundle import BundleRefused, build_bundle, read_manifest
from agent.fleet.release.update import ReleaseUpdater
from tests.support.running import add_device
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parent.parent
TREE = ("agent", "drivers", "firmware_bridge", "ingest", "setup.py", "README.md")


def make_tree(dest: Path, version: str, *, broken: bool = False) -> Path:
    """A copy of the agent's source tree declaring `version`; `broken` makes the agent exit
    at start (a release that signs fine but does not work)."""
    for name in TREE:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    init = dest / "agent" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "0.1.0"',
                                             f'__version__ = "{version}"'))
    if broken:
        cli_py = dest / "agent" / "cli" / "main.py"
        cli_py.write_text(cli_py.read_text().replace(
            "def main(argv: list[str] | None = None) -> None:\n",
            "def main(argv: list[str] | None = None) -> None:\n    raise SystemExit(3)\n"))
    return dest


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    vendor = generate_key_file(root / "vendor.key")
    (root / "vendor.pem").write_bytes(vendor.public_key_pem())
    generate_key_file(root / "other.key")
    out = {}
    for version, broken in (("1.0.0", False), ("1.1.0", False), ("1.2.0", True),
                            ("0.9.0", False)):
        tree = make_tree(root / f"src-{version}", version, broken=broken)
        out[version] = root / f"cocoon-agent-{version}.tar.gz"
        build_bundle(tree, root / "vendor.key", out[version])
    out["mis-signed"] = root / "mis-signed.tar.gz"
    build_bundle(root / "src-1.1.0", root / "other.key", out["mis-signed"])
    out["dir"] = root
    return out


def quick_venv(release_dir: Path, cfg) -> None:
    """A real virtual environment per release, without pip (the package test installs into one
    with pip); the test's service runs the release's source with this interpreter."""
    venv.EnvBuilder(with_pip=False).create(release_dir / ".venv")


class AgentProcess:
    """The service: a real agent process running the release `current` points at."""

    def __init__(self, root: Path, config: Path):
        self.root, self.config = root, config
        self.proc: subprocess.Popen | None = None
        self.starts: list[str] = []

    def start(self) -> None:
        release = (self.root / "current").resolve()
        self.starts.append(release.name)
        env = {**os.environ, "PYTHONPATH": str(release)}
        self.proc = subprocess.Popen([sys.executable, "-m", "agent.cli.main", "--config",
                                      str(self.config), "run"], cwd=release, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)
        self.proc = None


@pytest.fixture
def device(site, bundles, tmp_path):
    root = tmp_path / "opt"
    config = add_device(site, "dev-a", update={
        "root": str(root), "vendor_public_key_file": str(bundles["dir"] / "vendor.pem"),
        "health_deadline_s": 30})
    cfg = load_config(config)
    service = AgentProcess(root, config)
    updater = ReleaseUpdater(cfg.section("update"), cfg, service=service, build_env=quick_venv,
                             poll_s=0.1)
    # What the Debian package does at install: release 1.0.0 under releases/, current -> it.
    manifest = read_manifest(bundles["1.0.0"], Verifier.from_file(bundles["dir"] / "vendor.pem"))
    updater.unpack(bundles["1.0.0"], manifest)
    updater.layout.point("current", "1.0.0")
    updater.events.recorded.clear()
    service.start()
    yield updater, service, cfg
    service.stop()


def started_versions(cfg) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(cfg.outbox_path)
    try:
        rows = conn.execute("SELECT payload FROM events WHERE type = 'agent.started' "
                            "ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [json.loads(p)["body"]["version"] for (p,) in rows]


def event_types(updater) -> list[str]:
    return [t for t, _ in updater.events.recorded]


def test_a_signed_newer_release_is_installed_switched_and_confirmed(device, bundles):
    updater, service, cfg = device
    wait_for(lambda: started_versions(cfg) == ["1.0.0"], 20, what="1.0.0 running")
    t0 = time.monotonic()
    assert updater.install(bundles["1.1.0"]) == "confirmed"
    took = time.monotonic() - t0
    layout = updater.layout
    assert (layout.current, layout.previous) == ("1.1.0", "1.0.0")
    assert os.readlink(layout.root / "current") == "releases/1.1.0"
    assert (layout.path("1.1.0") / ".venv" / "bin" / "python").exists()
    assert (layout.path("1.1.0") / "manifest.json").exists()
    assert not layout.trial_file.exists()
    assert service.starts == ["1.0.0", "1.1.0"] and service.proc.poll() is None
    assert started_versions(cfg)[-1] == "1.1.0"
    assert event_types(updater) == ["release.verified", "release.installed",
                                    "release.switched", "release.confirmed"]
    assert took < 25
    # Each step is a signed event in the outbox too, beside the agent's own.
    import sqlite3

    conn = sqlite3.connect(cfg.outbox_path)
    types = [t for (t,) in conn.execute("SELECT type FROM events WHERE type LIKE 'release.%' "
                                        "ORDER BY seq")]
    conn.close()
    assert types[-4:] == event_types(updater)

    # The technician can go back by hand; the outbox records it.
    result = CliRunner().invoke(cli, ["--config", str(cfg.path), "release", "status", "--json"])
    assert json.loads(result.output)["current"] == "1.1.0", result.output


def refused(updater, bundle) -> str:
    before = sorted(p.name for p in updater.layout.releases.iterdir())
    with pytest.raises(BundleRefused) as exc:
        updater.install(bundle)
    assert sorted(p.name for p in updater.layout.releases.iterdir()) == before  # nothing written
    assert updater.layout.current == "1.0.0" and not updater.layout.trial_file.exists()
    assert event_types(updater)[-1] == "release.refused"
    assert updater.events.recorded[-1][1]["reason"] == str(exc.value)
    return str(exc.value)


def test_a_bundle_signed_by_another_key_is_refused(device, bundles):
    updater, _, _ = device
    assert "not the pinned vendor key's" in refused(updater, bundles["mis-signed"])


def rewrite(bundle: Path, out: Path, change) -> Path:
    """Copy a bundle member by member, letting `change(name, data)` alter or add members."""
    with tarfile.open(bundle) as src, tarfile.open(out, "w:gz") as dst:
        members = [(m, src.extractfile(m).read()) for m in src.getmembers()]
        for info, data in change(members):
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return out


def test_a_tampered_file_or_an_unlisted_file_is_refused(device, bundles, tmp_path):
    updater, _, _ = device

    def tamper(members):
        return [(i, d + b"\nimport os; os.system('id')\n" if i.name == "files/agent/cli/main.py"
                 else d) for i, d in members]

    why = refused(updater, rewrite(bundles["1.1.0"], tmp_path / "t.tar.gz", tamper))
    assert "agent/cli/main.py" in why and "SHA-256" in why

    def smuggle(members):
        extra = tarfile.TarInfo("files/agent/backdoor.py")
        return members + [(extra, b"print('hi')\n")]

    assert "does not list" in refused(updater, rewrite(bundles["1.1.0"], tmp_path / "s.tar.gz",
                                                       smuggle))

    def escape(members):
        return [(i, d) for i, d in members if i.name != "files/agent/cli/main.py"]

    assert "lacks" in refused(updater, rewrite(bundles["1.1.0"], tmp_path / "e.tar.gz", escape))


def test_a_downgrade_or_the_same_version_is_refused(device, bundles):
    updater, _, _ = device
    assert "downgrades are refused" in refused(updater, bundles["0.9.0"])
    assert "not newer than the running 1.0.0" in refused(updater, bundles["1.0.0"])


def test_a_release_that_does_not_come_up_healthy_is_rolled_back(device, bundles):
    updater, service, cfg = device
    wait_for(lambda: started_versions(cfg) == ["1.0.0"], 20, what="1.0.0 running")
    now = [time.time()]
    updater.clock = lambda: now[0]
    # Switch and return, as if the installer were cut off: the timer's check finishes it.
    assert updater.install(bundles["1.2.0"], wait=False) == "on trial"
    assert updater.layout.current == "1.2.0" and updater.layout.trial_file.exists()
    wait_for(lambda: service.proc.poll() is not None, 20, what="the broken release to exit")
    assert updater.check() == "on trial"           # still within its deadline
    now[0] += 31                                   # the deadline passes without health
    assert updater.check() == "rolled back"
    assert (updater.layout.current, service.starts) == ("1.0.0", ["1.0.0", "1.2.0", "1.0.0"])
    wait_for(lambda: started_versions(cfg).count("1.0.0") == 2, 20, what="1.0.0 running again")
    assert event_types(updater)[-2:] == ["release.switched", "release.rolled_back"]
    assert "not healthy within 30 s" in updater.events.recorded[-1][1]["reason"]
    state = updater.layout.state()
    assert state["failed"] == ["1.2.0"] and state["history"][-1]["outcome"] == "rolled back"
    # The failed version is not tried again.
    assert "already failed" in refused(updater, bundles["1.2.0"])


def test_release_build_refuses_a_version_the_tree_does_not_declare(tmp_path, bundles):
    result = CliRunner().invoke(cli, ["release", "build", "--key", str(bundles["dir"] /
                                "vendor.key"), "--source", str(bundles["dir"] / "src-1.1.0"),
                                "--version", "2.0.0", str(tmp_path / "x.tar.gz")])
    assert result.exit_code != 0 and "differs from" in str(result.exception or result.output)


def test_manual_rollback_and_status_through_the_cli(device, bundles):
    updater, service, cfg = device
    wait_for(lambda: started_versions(cfg) == ["1.0.0"], 20, what="1.0.0 running")
    assert updater.install(bundles["1.1.0"]) == "confirmed"
    runner = CliRunner()
    # The CLI's own updater uses the configured commands; here the service is the test's.
    back = updater.rollback("asked by the technician")
    assert back == "1.0.0" and updater.layout.current == "1.0.0"
    result = runner.invoke(cli, ["--config", str(cfg.path), "release", "status"])
    assert result.exit_code == 0 and "current    1.0.0" in result.output, result.output
    assert "1.1.0 confirmed" in result.output
    assert load_signer(cfg.device.signing_key_file)  # the device's key is untouched

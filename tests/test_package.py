"""The Debian package, built with scripts/build-deb and installed on this machine with dpkg.

Installs for real (as root): files under /opt/cocoon-agent, the cocoon user, the state and
configuration directories, a virtual environment built by postinst from a wheelhouse made of
the development environment's packages (no network), the /usr/bin wrapper; then remove keeps
the data and configuration, and purge deletes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOT = Path("/opt/cocoon-agent")
VENV_PIP = REPO / ".venv" / "bin" / "pip"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="installs a Debian package: needs root"),
    pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="dpkg-deb not installed"),
]


def run(*cmd, check=True, timeout=300, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, check=False, **kw)
    if check and done.returncode != 0:
        raise AssertionError(f"{cmd} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def installed() -> bool:
    out = run("dpkg-query", "-W", "-f=${Status}", "cocoon-agent", check=False).stdout
    return "install ok installed" in out


@pytest.fixture(scope="module")
def wheelhouse(request, tmp_path_factory):
    """Wheels of the agent's dependencies, made once from what the development environment
    already has (pip's cache, the configured index), kept in pytest's cache (or for this run
    only when the cache is disabled)."""
    key = hashlib.sha256((REPO / "setup.py").read_bytes()).hexdigest()[:16]
    cache = getattr(request.config, "cache", None)
    path = Path(cache.mkdir(f"cocoon-wheelhouse-{key}") if cache is not None
                else tmp_path_factory.mktemp(f"cocoon-wheelhouse-{key}"))
    if not any(path.glob("click-*.whl")):
        run(VENV_PIP, "wheel", "--quiet", "--wheel-dir", path, f"{REPO}[device]", timeout=600)
        for own in path.glob("cocoon_agent-*.whl"):
            own.unlink()
    return path


@pytest.fixture(scope="module")
def deb(wheelhouse, tmp_path_factory):
    out = tmp_path_factory.mktemp("deb")
    path = Path(run(REPO / "scripts" / "build-deb", "--wheelhouse", wheelhouse, "--out", out)
                .stdout.strip())
    assert path.exists()
    return path


@pytest.fixture
def clean_system():
    if installed() or ROOT.exists():
        pytest.skip("cocoon-agent is already installed on this machine; not touching it")
    yield
    if installed() or ROOT.exists():
        run("dpkg", "--purge", "cocoon-agent", check=False)


def test_package_metadata(deb):
    info = run("dpkg-deb", "--field", deb, "Package", "Architecture", "Depends").stdout
    assert "Architecture: all" in info
    for dep in ("python3-venv", "pcscd", "libpcsclite1", "python3-dev", "gcc",
                "libpcsclite-dev"):
        assert dep in info
    listing = run("dpkg-deb", "--contents", deb).stdout
    for path in ("./usr/bin/cocoon-agent", "./lib/systemd/system/cocoon-agent.service",
                 "./lib/systemd/system/cocoon-agent-release-check.timer",
                 "./opt/cocoon-agent/releases/0.1.0/agent/cli/main.py",
                 "./opt/cocoon-agent/releases/0.1.0/setup.py"):
        assert path in listing, path
    assert "__pycache__" not in listing and "/.venv/" not in listing  # built on the target


def test_install_run_remove_purge(deb, wheelhouse, clean_system, tmp_path):
    run("dpkg", "-i", deb, timeout=600)
    assert installed()

    # The release, its venv (built here by postinst) and the current link.
    release = ROOT / "releases" / "0.1.0"
    assert os.readlink(ROOT / "current") == "releases/0.1.0"
    venv_cfg = (release / ".venv" / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in venv_cfg
    assert (release / ".venv" / "bin" / "cocoon-agent").exists()
    assert not (release / "build").exists() and not list(release.glob("*.egg-info"))

    # The service user, its state directory, the configuration directory, the unit.
    user = pwd.getpwnam("cocoon")
    assert user.pw_shell == "/usr/sbin/nologin" and user.pw_dir == "/var/lib/cocoon-agent"
    state = Path("/var/lib/cocoon-agent").stat()
    assert (state.st_uid, stat.S_IMODE(state.st_mode)) == (user.pw_uid, 0o700)
    assert Path("/etc/cocoon-agent").is_dir()
    unit = Path("/lib/systemd/system/cocoon-agent.service").read_text()
    assert "ExecStart=/opt/cocoon-agent/current/.venv/bin/cocoon-agent" in unit
    assert "User=cocoon" in unit and "StateDirectory=cocoon-agent" in unit

    # The wrapper runs the installed agent (not the development tree).
    env = {"PATH": "/usr/bin:/bin", "HOME": "/root"}
    helped = run("/usr/bin/cocoon-agent", "--help", env=env, cwd="/")
    assert "release" in helped.stdout
    where = run(release / ".venv" / "bin" / "python", "-c",
                "import agent, smartcard, paho; print(agent.__file__)", env=env,
                cwd="/").stdout
    assert where.startswith(str(release / ".venv"))
    check_doctor(env)
    check_self_update(env, tmp_path, user, wheelhouse)

    # Remove: program gone, data and configuration kept.
    keep = Path("/var/lib/cocoon-agent/outbox.sqlite")
    assert keep.exists()  # the release events were appended to the device's outbox
    Path("/etc/cocoon-agent/agent.toml").write_text("# technician's file\n")
    run("dpkg", "--remove", "cocoon-agent")
    assert not ROOT.exists() and not Path("/usr/bin/cocoon-agent").exists()
    assert not Path("/lib/systemd/system/cocoon-agent.service").exists()
    assert keep.exists()
    assert Path("/etc/cocoon-agent/agent.toml").exists()

    # Purge: data and configuration gone too.
    run("dpkg", "--purge", "cocoon-agent")
    assert not installed()
    assert not Path("/var/lib/cocoon-agent").exists() and not Path("/etc/cocoon-agent").exists()


def check_doctor(env: dict) -> None:
    """`cocoon-agent doctor` on a configured device with no hardware and no broker: it runs,
    fails, and says what is missing, without a traceback."""
    from agent.contract.signing import generate_key_file
    from agent.demo.sandbox import write_toml

    etc = Path("/etc/cocoon-agent")
    generate_key_file(etc / "device-signing.key")
    generate_key_file(etc / "ingest.key")
    from agent.contract.signing import load_signer

    (etc / "ingest.pem").write_bytes(load_signer(etc / "ingest.key").public_key_pem())
    write_toml(etc / "agent.toml", {
        "device": {"id": "station-01", "data_dir": "/var/lib/cocoon-agent",
                   "signing_key_file": str(etc / "device-signing.key")},
        "mqtt": {"host": "127.0.0.1", "port": 1, "ca_file": str(etc / "ca.pem"),
                 "cert_file": str(etc / "device.pem"), "key_file": str(etc / "device.key")},
        "keys": {"ingest_public_key_file": str(etc / "ingest.pem")},
        "scale": {"port": "/dev/ttyUSB7", "protocol": "xk3190-a9", "capacity_g": "150000"},
    })
    done = run("/usr/bin/cocoon-agent", "doctor", check=False, env=env, timeout=120, cwd="/")
    text = done.stdout + done.stderr
    assert done.returncode == 1, text
    assert "Traceback" not in text, text
    (scale,) = [line for line in done.stdout.splitlines() if line.startswith("scale ")]
    assert scale.split()[1] == "FAIL", scale
    assert "/dev/ttyUSB7" in scale and "No such file or directory" in scale, scale
    report = json.loads(run("/usr/bin/cocoon-agent", "doctor", "--json", "--skip", "broker",
                            check=False, env=env, timeout=120, cwd="/").stdout)
    (row,) = [c for c in report["checks"] if c["check"] == "scale"]
    assert row["status"] == "fail" and "/dev/ttyUSB7" in row["detail"], row


def check_self_update(env: dict, tmp_path: Path, user, wheels: Path) -> None:
    """A signed 0.1.1 bundle installed by the packaged agent as root: its venv built with pip
    from the bundle's wheelhouse, the switch, the release events in the outbox (written as the
    cocoon user, so the agent can still open it), then a rollback by hand."""
    import sqlite3

    from agent.contract.signing import generate_key_file, load_signer
    from agent.demo.sandbox import write_toml
    from tests.test_release import make_tree

    vendor = generate_key_file(tmp_path / "vendor.key")
    etc, state = Path("/etc/cocoon-agent"), Path("/var/lib/cocoon-agent")
    (etc / "vendor.pub").write_bytes(vendor.public_key_pem())
    key = state / "device-signing.key"
    if not key.exists():
        generate_key_file(key)
        os.chown(key, user.pw_uid, user.pw_gid)
    (etc / "ingest.pem").write_bytes(load_signer(key).public_key_pem())
    write_toml(etc / "agent.toml", {
        "device": {"id": "station-01", "data_dir": str(state), "signing_key_file": str(key)},
        "mqtt": {"host": "127.0.0.1", "port": 1, "ca_file": str(etc / "ca.pem"),
                 "cert_file": str(etc / "device.pem"), "key_file": str(etc / "device.key")},
        "keys": {"ingest_public_key_file": str(etc / "ingest.pem")},
        "update": {"vendor_public_key_file": str(etc / "vendor.pub")},
    })
    tree = make_tree(tmp_path / "src", "0.1.1")
    bundle = tmp_path / "cocoon-agent-0.1.1.tar.gz"
    run("/usr/bin/cocoon-agent", "release", "build", "--key", tmp_path / "vendor.key",
        "--source", tree, "--wheelhouse", wheels, bundle, env=env, cwd="/")

    done = run("/usr/bin/cocoon-agent", "release", "install", "--no-wait", bundle, env=env,
               cwd="/", timeout=600)
    assert os.readlink(ROOT / "current") == "releases/0.1.1", done.stderr
    assert os.readlink(ROOT / "previous") == "releases/0.1.0"
    new_venv = ROOT / "releases" / "0.1.1" / ".venv"
    version = run(new_venv / "bin" / "python", "-c", "import agent; print(agent.__version__)",
                  env=env, cwd="/").stdout.strip()
    assert version == "0.1.1"
    status = run("/usr/bin/cocoon-agent", "release", "status", env=env, cwd="/").stdout
    assert "trial      0.1.1" in status, status

    run("/usr/bin/cocoon-agent", "release", "rollback", env=env, cwd="/")
    assert os.readlink(ROOT / "current") == "releases/0.1.0"
    outbox = state / "outbox.sqlite"
    owners = {p.name: p.stat().st_uid for p in state.iterdir() if p.name.startswith("outbox")}
    assert set(owners.values()) == {user.pw_uid}, owners  # never root: the agent must open it
    conn = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    types = [t for (t,) in conn.execute("SELECT type FROM events ORDER BY seq")]
    conn.close()
    assert types == ["release.verified", "release.installed", "release.switched",
                     "release.rolled_back"]

"""Where releases of the agent live on a device, and the [update] configuration section.

    /opt/cocoon-agent/                 the root ([update] root)
        releases/0.1.0/                one source tree per version, each with its own .venv
        releases/0.2.0/
        current -> releases/0.2.0      what the service runs (/usr/bin/cocoon-agent follows it)
        previous -> releases/0.1.0     the last good version, kept for a rollback
        trial.json                     present while a new version is on trial
        release-state.json             versions refused after a failed trial, and the history

Switching is one rename of a symlink over another, so a power cut leaves either the old or the
new link, never none. The Debian package installs its version the same way, so the package and
self-updates share one layout.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.contract.durable import fsync_dir
from agent.contract.settings import PATH, Schema, decode, integer, seconds, strings, text
from agent.errors import ConfigError
from agent.fleet.release.bundle import BundleRefused, parse_version

DEFAULT_ROOT = Path("/opt/cocoon-agent")
UNIT = "cocoon-agent.service"


@dataclass(frozen=True)
class UpdateConfig:
    """[update]: how this device accepts new versions of the agent."""

    vendor_public_key_file: Path     # Ed25519 public key pinned on the device
    root: Path                       # where releases/, current and previous live
    health_deadline_s: float         # a new version must be healthy within this, or it is undone
    python: str                      # the interpreter each release's venv is built with
    pip_args: tuple[str, ...]        # extra pip arguments (an index URL, a proxy...)
    keep_releases: int               # installed versions kept, current and previous included
    stop_command: tuple[str, ...] | None
    start_command: tuple[str, ...] | None


def systemd_running() -> bool:
    """systemd is PID 1 (sd_booted()'s test): only then can the service be stopped and
    started by systemctl."""
    return os.path.isdir("/run/systemd/system")


COMMAND = strings("a list of strings (a command and its arguments)")


class UpdateSection(Schema, kw_only=True):
    vendor_public_key_file: PATH = Path("/etc/cocoon-agent/vendor.pub")
    root: PATH = DEFAULT_ROOT
    health_deadline_s: seconds(5, 3600) = 300.0
    python: text() = "/usr/bin/python3"
    pip_args: strings("a list of strings") = ()
    keep_releases: integer(2, 20) = 3
    stop_command: COMMAND | None = None     # [] for none
    start_command: COMMAND | None = None


def _command(path: Path, key: str, value: tuple[str, ...] | None, default):
    if value is None:
        return default
    if not all(value):
        raise ConfigError(f"{path}: [update] {key}: expected a list of strings (a command "
                          f"and its arguments), got {list(value)!r}")
    return value or None


def parse_update(path: Path, table: Any) -> UpdateConfig:
    """Parse [update]; listed in agent.config.PLUGGED_SECTIONS."""
    sec = decode(path, "update", table, UpdateSection)
    systemd = systemd_running()
    return UpdateConfig(
        vendor_public_key_file=sec.vendor_public_key_file,
        root=sec.root,
        health_deadline_s=sec.health_deadline_s,
        python=sec.python,
        pip_args=sec.pip_args,
        keep_releases=sec.keep_releases,
        stop_command=_command(path, "stop_command", sec.stop_command,
                              ("systemctl", "stop", UNIT) if systemd else None),
        start_command=_command(path, "start_command", sec.start_command,
                               ("systemctl", "start", UNIT) if systemd else None),
    )


def default_update_config(**overrides) -> UpdateConfig:
    """[update] with every default, for a device whose file has no such section."""
    return parse_update(Path("/etc/cocoon-agent/agent.toml"), overrides)


class ReleaseRoot:
    """The release directories and the two symlinks under one root."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.releases = self.root / "releases"
        self.trial_file = self.root / "trial.json"
        self.state_file = self.root / "release-state.json"

    def path(self, version: str) -> Path:
        parse_version(version)
        return self.releases / version

    def link_version(self, name: str) -> str | None:
        """The version a link (current, previous) points at, or None."""
        try:
            target = os.readlink(self.root / name)
        except (FileNotFoundError, OSError):
            return None
        return Path(target).name

    @property
    def current(self) -> str | None:
        return self.link_version("current")

    @property
    def previous(self) -> str | None:
        return self.link_version("previous")

    def installed(self) -> list[str]:
        """Installed versions, oldest first (staging directories start with a dot)."""
        if not self.releases.is_dir():
            return []
        names = [p.name for p in self.releases.iterdir()
                 if p.is_dir() and not p.name.startswith(".")]
        good = []
        for name in names:
            try:
                good.append((parse_version(name), name))
            except BundleRefused:  # a stray directory is not a release
                continue
        return [name for _, name in sorted(good)]

    def point(self, name: str, version: str | None) -> None:
        """Make link `name` point at releases/<version> atomically (or remove it: None)."""
        link = self.root / name
        if version is None:
            link.unlink(missing_ok=True)
        else:
            if not self.path(version).is_dir():
                raise ConfigError(f"release {version} is not installed under {self.releases}")
            tmp = self.root / f".{name}.{os.getpid()}.tmp"
            tmp.unlink(missing_ok=True)
            os.symlink(f"releases/{version}", tmp)
            os.replace(tmp, link)
        fsync_dir(self.root)

    # -- small JSON records, written atomically -------------------------------------------------

    def read_json(self, path: Path) -> dict | None:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:
            raise ConfigError(f"{path} is damaged (not JSON); move it aside") from None

    def write_json(self, path: Path, doc: dict | None) -> None:
        if doc is None:
            path.unlink(missing_ok=True)
        else:
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        fsync_dir(path.parent)

    def state(self) -> dict:
        return self.read_json(self.state_file) or {"failed": [], "history": []}

"""Installing a signed release beside the running one, switching to it, and undoing it.

`ReleaseUpdater.install` is the whole path, each step an event in the outbox:

1. verify the bundle (signature, version newer than the running one, every file's SHA-256)
   before anything is written: `release.verified`, or `release.refused` and nothing changes;
2. unpack into a staging directory, build its virtual environment there (on this machine, for
   its architecture) and rename it to releases/<version>: `release.installed`;
3. stop the service, write the trial record, point `previous` at the running version and
   `current` at the new one, start the service: `release.switched`;
4. wait until the new version is healthy (agent.fleet.release.health) or the deadline passes:
   `release.confirmed`, or switch back, restart and `release.rolled_back`.

The trial record lives on disk, so a trial interrupted by a power cut is finished by
`check()` (`cocoon-agent release check`, run every minute by a timer from the previous,
known-good release while a trial is open).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agent.config import AgentConfig
from agent.contract.signing import ED25519, Verifier
from agent.errors import CocoonError
from agent.fleet.release.bundle import (
    BundleRefused,
    Manifest,
    check_files,
    parse_version,
    read_manifest,
)
from agent.fleet.release.bundle import unpack as unpack_bundle
from agent.fleet.release.health import ReleaseEvents, outbox_head, probe
from agent.fleet.release.layout import ReleaseRoot, UpdateConfig

log = logging.getLogger(__name__)


class ReleaseError(CocoonError):
    """A release step that could not be done; the message says what to do."""


def build_venv(release_dir: Path, cfg: UpdateConfig) -> None:
    """Create release_dir/.venv with cfg.python and pip-install the release into it, from the
    release's own wheelhouse/ when it carries one (no network), else from the registry."""
    env = release_dir / ".venv"
    _run([cfg.python, "-m", "venv", str(env)], "create the virtual environment")
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "--no-input",
           "--disable-pip-version-check", *cfg.pip_args]
    wheelhouse = release_dir / "wheelhouse"
    if wheelhouse.is_dir():
        pip += ["--no-index", "--find-links", str(wheelhouse)]
    # pip builds a source tree in place: build from a copy, so the release stays as signed.
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(release_dir, src, ignore=shutil.ignore_patterns(".venv", "wheelhouse"))
        _run([*pip, f"{src}[device]"], "install the agent into its virtual environment")


def _run(cmd: list[str], what: str, timeout: float = 1800) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReleaseError(f"could not {what}: {exc}") from None
    if done.returncode != 0:
        raise ReleaseError(f"could not {what} ({' '.join(cmd[:4])} ... exited "
                           f"{done.returncode}): {done.stderr.strip()[-800:]}")


class CommandControl:
    """Stops and starts the service with commands ([update] stop_command / start_command)."""

    def __init__(self, cfg: UpdateConfig):
        self.stop_cmd, self.start_cmd = cfg.stop_command, cfg.start_command

    def _do(self, cmd, what: str) -> None:
        if not cmd:
            log.warning("release: no command to %s the agent here: do it by hand", what)
            return
        try:
            _run(list(cmd), f"{what} the agent", timeout=120)
        except ReleaseError as exc:  # a failed start is judged by the health deadline
            log.error("release: %s", exc)

    def stop(self) -> None:
        self._do(self.stop_cmd, "stop")

    def start(self) -> None:
        self._do(self.start_cmd, "start")


class ReleaseUpdater:
    def __init__(self, cfg: UpdateConfig, agent_config: AgentConfig | None, *,
                 events: Callable[[str, dict], None] | None = None,
                 service=None, build_env: Callable[[Path, UpdateConfig], None] = build_venv,
                 clock: Callable[[], float] = time.time, poll_s: float = 1.0):
        self.cfg = cfg
        self.agent_config = agent_config
        self.layout = ReleaseRoot(cfg.root)
        self.events = events or ReleaseEvents(agent_config)
        self.service = service or CommandControl(cfg)
        self.build_env = build_env
        self.clock = clock
        self.poll_s = poll_s

    # -- 1. verify -------------------------------------------------------------------------------

    def verify(self, bundle: Path) -> Manifest:
        """Signature, version and every file, before anything is written; release.refused
        (and BundleRefused) when any is wrong."""
        try:
            verifier = Verifier.from_file(self.cfg.vendor_public_key_file)
            if verifier.alg != ED25519:
                raise BundleRefused(f"{self.cfg.vendor_public_key_file}: the pinned vendor key "
                                    "must be Ed25519")
            manifest = read_manifest(bundle, verifier)
            running = self.layout.current
            if running and parse_version(manifest.version) <= parse_version(running):
                raise BundleRefused(f"version {manifest.version} is not newer than the running "
                                    f"{running}: downgrades are refused (use release rollback)")
            if manifest.version in self.layout.state().get("failed", []):
                raise BundleRefused(f"version {manifest.version} already failed its trial here")
            check_files(bundle, manifest)
        except (BundleRefused, CocoonError) as exc:
            self.events("release.refused", {"bundle": Path(bundle).name, "reason": str(exc)})
            raise BundleRefused(str(exc)) from None
        self.events("release.verified", {"version": manifest.version,
                                         "manifest_sha256": manifest.digest,
                                         "files": len(manifest.files), "key": verifier.kid})
        return manifest

    # -- 2. install beside the running version ------------------------------------------------

    def unpack(self, bundle: Path, manifest: Manifest) -> Path:
        target = self.layout.path(manifest.version)
        if manifest.version == self.layout.current:
            raise ReleaseError(f"release {manifest.version} is the running one")
        staging = self.layout.releases / f".staging-{manifest.version}"
        shutil.rmtree(staging, ignore_errors=True)
        self.layout.releases.mkdir(parents=True, exist_ok=True)
        try:
            unpack_bundle(bundle, manifest, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if target.exists():  # a leftover of an interrupted or rolled-back attempt
            shutil.rmtree(target)
        staging.rename(target)
        try:  # a venv's scripts name their absolute path: build it where it will run
            self.build_env(target, self.cfg)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        self.events("release.installed", {"version": manifest.version,
                                          "manifest_sha256": manifest.digest,
                                          "path": str(target)})
        return target

    # -- 3. switch --------------------------------------------------------------------------------

    def switch(self, version: str) -> dict:
        old = self.layout.current
        self.service.stop()
        after = outbox_head(self.agent_config) if self.agent_config else 0
        trial = {"version": version, "previous": old, "after_seq": after,
                 "switched_at": self.clock(),
                 "deadline": self.clock() + self.cfg.health_deadline_s}
        self.layout.write_json(self.layout.trial_file, trial)
        if old:
            self.layout.point("previous", old)
        self.layout.point("current", version)
        self.events("release.switched", {"version": version, "previous": old,
                                         "deadline_s": int(self.cfg.health_deadline_s)})
        self.service.start()
        return trial

    # -- 4. confirm or roll back ----------------------------------------------------------------

    def health(self, trial: dict) -> str | None:
        if self.agent_config is None:
            return None
        return probe(self.agent_config, trial["after_seq"], trial["version"])

    def check(self) -> str:
        """One look at an open trial: confirm it when healthy, roll it back when its deadline
        has passed; otherwise leave it. Returns what was decided."""
        trial = self.layout.read_json(self.layout.trial_file)
        if trial is None:
            return "no trial"
        reason = self.health(trial)
        if reason:
            self.confirm(trial, reason)
            return "confirmed"
        if self.clock() >= trial["deadline"]:
            self.rollback(f"not healthy within {self.cfg.health_deadline_s:g} s of the switch",
                          trial=trial)
            return "rolled back"
        return "on trial"

    def wait(self) -> str:
        """Check until the trial is decided."""
        while True:
            outcome = self.check()
            if outcome != "on trial":
                return outcome
            time.sleep(self.poll_s)

    def confirm(self, trial: dict, reason: str) -> None:
        self.layout.write_json(self.layout.trial_file, None)
        self._history(trial["version"], "confirmed")
        self.events("release.confirmed", {"version": trial["version"], "healthy": reason,
                                          "after_s": round(self.clock() - trial["switched_at"])})
        self.prune()

    def rollback(self, reason: str, trial: dict | None = None) -> str:
        """Switch back to the previous version and restart; the failed version is never tried
        again automatically."""
        failed = self.layout.current
        back = (trial or {}).get("previous") or self.layout.previous
        if not back or back == failed:
            raise ReleaseError("there is no previous release to roll back to")
        self.service.stop()
        self.layout.point("current", back)
        self.layout.write_json(self.layout.trial_file, None)
        if trial is not None:
            state = self.layout.state()
            state["failed"] = sorted(set(state.get("failed", [])) | {failed})
            self.layout.write_json(self.layout.state_file, state)
        self._history(failed, "rolled back")
        self.events("release.rolled_back", {"version": failed, "restored": back,
                                            "reason": reason})
        self.service.start()
        return back

    def _history(self, version: str, outcome: str) -> None:
        state = self.layout.state()
        state.setdefault("history", []).append({"version": version, "outcome": outcome,
                                                "at": int(self.clock())})
        state["history"] = state["history"][-50:]
        self.layout.write_json(self.layout.state_file, state)

    def prune(self) -> None:
        """Keep cfg.keep_releases versions (current and previous always)."""
        keep = {self.layout.current, self.layout.previous}
        installed = self.layout.installed()
        for version in installed[:max(0, len(installed) - self.cfg.keep_releases)]:
            if version not in keep:
                shutil.rmtree(self.layout.path(version), ignore_errors=True)

    # -- the whole path ----------------------------------------------------------------------------

    def install(self, bundle: Path, *, wait: bool = True) -> str:
        """Verify, install, switch and (with wait) see the trial through; returns the outcome."""
        if self.layout.trial_file.exists():
            raise ReleaseError("a release is on trial: wait for it or run release check")
        manifest = self.verify(Path(bundle))
        self.unpack(Path(bundle), manifest)
        self.switch(manifest.version)
        return self.wait() if wait else "on trial"

"""Remote configuration: a `config.set` command signed by the backend, applied as an overlay.

The technician's file under /etc stays read-only and is never rewritten. A configuration
change arrives as a signed command whose body is an overlay (sections and keys to set) with a
version that must increase. The agent merges it over the base file and validates the result
exactly as it validates a file; if valid, it stores the overlay in the state directory as
*pending*, records a `config.changed` audit event (who signed it, old and new hashes), and
restarts to run with it. The new configuration is on trial until the agent comes up healthy
with it (connected to the broker within `[device] config_trial_s`, default 120 s); then it is
*confirmed* (`config.applied`).
If it does not (the link never comes up, or the agent fails to start `MAX_ATTEMPTS` times), it
is rolled back to the previous overlay (`config.rolled_back`) and the agent restarts with that.
A `config.set` arriving while another is pending replaces it, recorded as `config.superseded`.

Trust anchors are not remotely configurable: the device's identity, its data directory and
every key or certificate file stay as the technician set them, so a compromised backend cannot
swap the keys that decide whom the device believes.

    body: {"version": 3, "overlay": {"outbox": {"telemetry_batch_ms": 500}}, "reason": "..."}
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, parse_config, read_toml
from agent.contract.durable import fsync_dir
from agent.contract.events import Draft
from agent.contract.settings import refuse_unknown_keys
from agent.errors import CocoonError, ConfigError

log = logging.getLogger(__name__)

OVERLAY_FILE = "config-overlay.json"
MAX_ATTEMPTS = 2         # starts on a pending overlay before it is rolled back
RESTART_EXIT_CODE = 75   # EX_TEMPFAIL: systemd's Restart=on-failure starts the agent again

#: (section, key) pairs that a remote change may never touch; key "*" protects a section.
PROTECTED = frozenset({
    ("device", "id"), ("device", "data_dir"), ("device", "signing_key_file"),
    ("device", "signing_alg"), ("device", "signing_key"), ("device", "pkcs11_module"),
    ("device", "pkcs11_pin_file"), ("keys", "*"), ("mqtt", "host"), ("mqtt", "ca_file"),
    ("mqtt", "cert_file"), ("mqtt", "key_file"), ("card", "issuer_public_key_file"),
    ("card", "m1_master_key_file"), ("update", "*"), ("firmware", "vendor_public_key_file"),
})


class ConfigRefused(CocoonError):
    """A `config.set` that cannot be applied (malformed, protected, invalid or not newer)."""


class RestartRequested(CocoonError):
    """The agent must restart to run with another configuration (exit RESTART_EXIT_CODE)."""


def config_hash(raw: dict) -> str:
    """SHA-256 of the configuration's canonical JSON: what audit events compare."""
    return hashlib.sha256(json.dumps(raw, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()).hexdigest()


def merge(base: dict, overlay: dict) -> dict:
    """The base configuration with the overlay's keys set, section by section."""
    out = {name: dict(table) if isinstance(table, dict) else table
           for name, table in base.items()}
    for section, values in overlay.items():
        out.setdefault(section, {})
        out[section] = {**out[section], **values}
    return out


def check_overlay(overlay: Any) -> dict:
    if not isinstance(overlay, dict) or not overlay:
        raise ConfigRefused("config.set needs a non-empty overlay: {section: {key: value}}")
    for section, values in overlay.items():
        if not isinstance(values, dict) or not values:
            raise ConfigRefused(f"overlay [{section}] must be a table of keys to set")
        if (section, "*") in PROTECTED:
            raise ConfigRefused(f"[{section}] cannot be changed remotely (trust anchors "
                                "stay as the technician set them)")
        for key in values:
            if (section, key) in PROTECTED:
                raise ConfigRefused(f"[{section}] {key} cannot be changed remotely (identity "
                                    "and trust anchors stay as the technician set them)")
    return overlay


class OverlayStore:
    """The overlay file in the data directory: the confirmed overlay, and a pending one."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / OVERLAY_FILE

    def load(self) -> dict:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"confirmed": None, "pending": None, "history": []}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.path}: unreadable configuration overlay ({exc}); move "
                              "it aside to run with the base file") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{self.path}: not a configuration overlay")
        return doc

    def save(self, doc: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".config-overlay.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(self.path.parent)

    @staticmethod
    def effective(doc: dict) -> dict | None:
        """The overlay entry the agent runs with: pending if any, else confirmed."""
        return doc.get("pending") or doc.get("confirmed")


def load_effective_config(path: str | Path, *, strict: bool = True) -> AgentConfig:
    """Read the base file and apply the overlay in its data directory (pending first).
    Unknown keys of the file are refused when `strict`, else listed in `unknown_keys`."""
    raw, path = read_toml(path)
    base = parse_config(raw, path, strict=strict)
    entry = OverlayStore.effective(OverlayStore(base.device.data_dir).load())
    if entry is None:
        return base
    try:
        return parse_config(merge(raw, entry["overlay"]), path, strict=strict)
    except ConfigError as exc:
        # Valid when accepted; the base file changed since. The technician's file wins.
        log.error("configuration overlay v%s no longer fits %s (%s); running with the base "
                  "file", entry.get("version"), path, exc)
        return base


class RemoteConfig:
    """The `config.set` handler and the trial of a new configuration."""

    def __init__(self, config: AgentConfig, outbox, *, trial_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.outbox = outbox
        self.store = OverlayStore(config.device.data_dir)
        self.trial_s = config.device.config_trial_s if trial_s is None else trial_s
        self.clock = clock
        self.restart_requested = threading.Event()

    def _base_raw(self) -> dict:
        raw, _ = read_toml(self.config.path)
        return raw

    def _raw_of(self, doc: dict) -> dict:
        entry = OverlayStore.effective(doc)
        base = self._base_raw()
        return base if entry is None else merge(base, entry["overlay"])

    # -- the command ------------------------------------------------------------------------

    def handle(self, cmd) -> dict:
        body = cmd.body
        version = body.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ConfigRefused("config.set needs a positive integer version")
        overlay = check_overlay(body.get("overlay"))
        doc = self.store.load()
        newest = max([0] + [e["version"] for e in (doc.get("confirmed"), doc.get("pending"))
                             if e] + [h.get("version", 0) for h in doc.get("history", [])])
        if version <= newest:
            raise ConfigRefused(f"configuration version {version} is not newer than {newest}")
        base_entry = doc.get("confirmed")
        combined = merge(base_entry["overlay"], overlay) if base_entry else overlay
        base_raw = self._base_raw()
        new_raw = merge(base_raw, combined)
        try:
            new = parse_config(new_raw, self.config.path, strict=False)
            # Keys the technician's file already has are reported on the device; a key the
            # bank's overlay brings must be one this version reads.
            old = parse_config(base_raw, self.config.path, strict=False).unknown_keys
            refuse_unknown_keys([u for u in new.unknown_keys
                                 if (u.section, u.key) not in {(o.section, o.key) for o in old}])
        except ConfigError as exc:
            raise ConfigRefused(f"the new configuration is not valid: {exc}") from None
        old_hash = config_hash(self._raw_of(doc))
        new_hash = config_hash(new_raw)
        superseded = doc.get("pending")
        if superseded:
            # Still on trial: this one replaces it (built on the confirmed overlay, not on
            # it), and its version stays spent.
            doc.setdefault("history", []).append({k: superseded[k] for k in (
                "version", "command_id", "new_hash")} | {"outcome": "superseded"})
        doc["pending"] = {"version": version, "overlay": combined, "command_id": cmd.id,
                          "kid": cmd.kid, "reason": str(body.get("reason", ""))[:200],
                          "old_hash": old_hash, "new_hash": new_hash, "attempts": 0,
                          "received": time.time()}
        self.store.save(doc)
        if superseded:
            self.outbox.append(Draft("config.superseded", "alert", {
                "version": superseded["version"], "command_id": superseded["command_id"],
                "superseded_hash": superseded["new_hash"], "by_version": version,
                "by_command_id": cmd.id, "new_hash": new_hash}))
            log.warning("configuration v%d, still on trial, is superseded by v%d",
                        superseded["version"], version)
        self.outbox.append(Draft("config.changed", "alert", {
            "version": version, "command_id": cmd.id, "signed_by": cmd.kid,
            "old_hash": old_hash, "new_hash": new_hash,
            "changed": sorted(f"{s}.{k}" for s, values in overlay.items() for k in values),
            "reason": str(body.get("reason", ""))[:200]}))
        log.warning("configuration v%d accepted (command %s): restarting to apply it",
                    version, cmd.id)
        self.restart_requested.set()
        return {"version": version, "new_hash": new_hash, "restart": True}

    # -- the trial ----------------------------------------------------------------------------

    def begin(self) -> None:
        """At start: count this start against a pending overlay; roll it back (and ask for a
        restart) when it has failed to come up healthy MAX_ATTEMPTS times."""
        doc = self.store.load()
        pending = doc.get("pending")
        if not pending:
            return
        if pending["attempts"] >= MAX_ATTEMPTS:
            self.roll_back(f"the agent did not come up healthy in {pending['attempts']} "
                           "starts with it")
            raise RestartRequested("configuration rolled back: restart with the previous one")
        pending["attempts"] += 1
        self.store.save(doc)

    def watch(self, stop: threading.Event, healthy: Callable[[], bool],
              poll_s: float = 0.5) -> None:
        """While a pending overlay is on trial: confirm it once healthy, roll it back if
        the trial time passes first."""
        pending = self.store.load().get("pending")
        if not pending:
            return
        deadline = self.clock() + self.trial_s
        while not stop.is_set():
            if healthy():
                self.confirm()
                return
            if self.clock() >= deadline:
                self.roll_back(f"not connected within {self.trial_s:g} s")
                self.restart_requested.set()
                return
            stop.wait(poll_s)

    def confirm(self) -> None:
        doc = self.store.load()
        pending = doc.get("pending")
        if not pending:
            return
        doc.setdefault("history", []).append({k: pending[k] for k in (
            "version", "command_id", "new_hash")} | {"outcome": "applied"})
        doc["confirmed"], doc["pending"] = pending, None
        self.store.save(doc)
        self.outbox.append(Draft("config.applied", "alert", {
            "version": pending["version"], "command_id": pending["command_id"],
            "hash": pending["new_hash"], "starts": pending["attempts"]}))
        log.info("configuration v%d confirmed: the agent is healthy with it",
                 pending["version"])

    def roll_back(self, reason: str) -> None:
        doc = self.store.load()
        pending = doc.get("pending")
        if not pending:
            return
        doc.setdefault("history", []).append({k: pending[k] for k in (
            "version", "command_id", "new_hash")} | {"outcome": "rolled back"})
        doc["pending"] = None
        self.store.save(doc)
        restored = doc.get("confirmed")
        self.outbox.append(Draft("config.rolled_back", "alert", {
            "version": pending["version"], "command_id": pending["command_id"],
            "reason": reason, "failed_hash": pending["new_hash"],
            # what the agent now runs with: the confirmed overlay (the pending one's
            # old_hash names a superseded overlay when there was one)
            "restored_hash": config_hash(self._raw_of(doc)),
            "restored_version": restored["version"] if restored else 0}))
        log.error("configuration v%d rolled back: %s", pending["version"], reason)

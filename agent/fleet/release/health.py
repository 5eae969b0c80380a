"""What "healthy" means for a new release, and how the updater writes its events.

A new version is healthy once, after the switch, the broker or the ingest has taken an event
from it: some event numbered after the switch is marked sent (the broker's PUBACK over TLS) or
covered by the ingest's signed acknowledgement. The old agent is stopped before the switch, so
only the new one can have published it: the new code started, opened the outbox and its keys,
connected with its certificate and published. When the new agent's `agent.started` event is
still in the outbox, it must also report the version being tried.

The updater runs as root but the outbox belongs to the service user: SQLite would create its
-wal and -shm files as root and lock the agent out of its own outbox. So every outbox access
happens with the effective user and group of the data directory's owner.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from agent.config import AgentConfig
from agent.contract.events import Draft

log = logging.getLogger(__name__)


@contextlib.contextmanager
def as_owner_of(path: Path) -> Iterator[None]:
    """Run the block with the effective ids of `path`'s owner when we are root."""
    if os.geteuid() != 0:
        yield
        return
    st = os.stat(path)
    if st.st_uid == 0:
        yield
        return
    gid = os.getegid()
    os.setegid(st.st_gid)
    os.seteuid(st.st_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(gid)


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def outbox_head(config: AgentConfig) -> int:
    """The outbox's head sequence number (0 when there is no outbox yet)."""
    path = config.outbox_path
    if not path.exists():
        return 0
    with as_owner_of(path.parent):
        conn = _ro(path)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'head_seq'").fetchone()
        finally:
            conn.close()
    return int(row[0]) if row else 0


def probe(config: AgentConfig, after_seq: int, version: str) -> str | None:
    """Why the agent counts as healthy with `version`, or None while it does not (yet)."""
    path = config.outbox_path
    if not path.exists():
        return None
    with as_owner_of(path.parent):
        conn = _ro(path)
        try:
            acked = int(conn.execute(
                "SELECT value FROM meta WHERE key = 'acked_seq'").fetchone()[0])
            started = conn.execute(
                "SELECT seq, payload FROM events WHERE type = 'agent.started' AND seq > ? "
                "ORDER BY seq DESC LIMIT 1", (after_seq,)).fetchone()
            sent = conn.execute("SELECT min(seq) FROM events WHERE seq > ? AND state = 1",
                                (after_seq,)).fetchone()[0]
        except sqlite3.Error as exc:
            log.warning("release: cannot read the outbox yet: %s", exc)
            return None
        finally:
            conn.close()
    if started is not None:
        running = json.loads(started[1]).get("body", {}).get("version")
        if running != version:
            return None  # another version started after the switch: not the one on trial
    if acked > after_seq:
        return f"the ingest acknowledged events up to {acked} (switch after {after_seq})"
    if sent is not None:
        return f"the broker took event {sent} (switch after {after_seq})"
    return None


class ReleaseEvents:
    """Appends release.* events to the device's outbox (as its owner), or only logs them on a
    device that has no configuration yet."""

    def __init__(self, config: AgentConfig | None):
        self.config = config
        self.recorded: list[tuple[str, dict]] = []

    def __call__(self, type_: str, body: dict) -> None:
        self.recorded.append((type_, body))
        log.info("%s %s", type_, json.dumps(body, sort_keys=True))
        if self.config is None:
            return
        from agent.contract.signing import load_device_signer
        from agent.spine.outbox import Outbox

        cfg = self.config
        cfg.device.data_dir.mkdir(parents=True, exist_ok=True)
        with as_owner_of(cfg.device.data_dir), Outbox(cfg.outbox_path, device=cfg.device.id,
                    signer=load_device_signer(cfg.device),
                    capacity_bytes=cfg.outbox.capacity_bytes,
                    alert_reserve_bytes=cfg.outbox.alert_reserve_bytes) as outbox:
            outbox.append(Draft(type_, "alert", body))

"""Run a whole installation in-process for the end-to-end tests.

`make_site()` builds an `agent.demo.sandbox.Site` (CA, Mosquitto, ingest, operator, keys) with short
MQTT timeouts; `RunningAgent` and `RunningIngest` run `agent.ops.service.Agent` and
`ingest.service.Ingest` in threads, each with its own stop Event; the `ingest_*` and `outbox_*`
functions read the SQLite files (or the ingest's PostgreSQL database, when its configuration has a
[store] url) directly, through their own short-lived connections, so they work whether or not the
services are running.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path

from agent.contract.events import Draft
from agent.demo.sandbox import Site
from agent.fleet.remote_config import load_effective_config
from agent.ops.service import Agent, open_outbox
from ingest.config import load_ingest_config
from ingest.service import Ingest

from .waiting import wait_for

# Short timeouts so that faults are noticed and repaired within a test's budget.
FAST_MQTT = {
    "ack_timeout_s": 2,
    "keepalive_s": 2,
    "connack_timeout_s": 2,
    "reconnect_min_s": 0.05,
    "reconnect_max_s": 0.5,
}
BIN = Path(sys.executable).parent


def make_site(root: Path, **mqtt) -> Site:
    """A Site under `root` with FAST_MQTT (plus `mqtt`) everywhere, its broker started."""
    site = Site.create(Path(root), mqtt_overrides={**FAST_MQTT, **mqtt})
    site.start_broker()
    return site


def add_device(site: Site, device: str, *, mqtt: dict | None = None,
               heartbeat_s: float = 1.0, outbox: dict | None = None,
               device_section: dict | None = None, **sections) -> Path:
    """Register `device` with the Site and write its config.

    Telemetry is not held back for group commit by default (`telemetry_batch_ms` 0): a test
    appending from one thread would otherwise wait up to 200 ms per telemetry event.
    """
    sections = {"device": {"heartbeat_interval_s": heartbeat_s, **(device_section or {})},
                "mqtt": dict(mqtt or {}),
                "outbox": {"telemetry_batch_ms": 0, **(outbox or {})}, **sections}
    return site.add_device(device, **sections)


class _Running:
    """A service's run(stop) in a daemon thread; errors are kept and re-raised by stop()."""

    name = "service"

    def __init__(self):
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def _target(self) -> None:
        try:
            self._service().run(self.stop_event)
        except BaseException as exc:
            self.error = exc

    def _service(self):
        raise NotImplementedError

    def start(self):
        self.thread = threading.Thread(target=self._target, name=self.name, daemon=True)
        self.thread.start()
        return self

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout)
            if self.thread.is_alive():
                raise AssertionError(f"{self.name} did not stop within {timeout} s")
        if self.error is not None:
            raise AssertionError(f"{self.name} failed: {self.error!r}") from self.error

    def wait_connected(self, timeout: float = 10.0) -> None:
        wait_for(lambda: self.link.status.connected or not self.running, timeout,
                 what=f"{self.name} connected")
        if not self.link.status.connected:
            raise AssertionError(f"{self.name} stopped: {self.error!r}")

    def __enter__(self):
        return self if self.thread else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class RunningAgent(_Running):
    """`Agent(load_effective_config(path))` run in a thread. Build it, adjust it (e.g.
    `.dispatcher.register(...)`), then `.start()`."""

    def __init__(self, config_path: Path, *, start: bool = True):
        super().__init__()
        self.config = load_effective_config(config_path)
        self.name = f"agent-{self.config.device.id}"
        self.agent = Agent(self.config)
        if start:
            self.start()

    def _service(self):
        return self.agent

    def stop(self, timeout: float = 10.0) -> None:
        if self.thread is None:
            self.agent.outbox.close()
        super().stop(timeout)

    @property
    def outbox(self):
        return self.agent.outbox

    @property
    def link(self):
        return self.agent.link

    @property
    def uplink(self):
        return self.agent.uplink

    @property
    def dispatcher(self):
        return self.agent.dispatcher

    def unacked(self) -> int:
        counts = self.outbox.stats().counts
        return counts["pending"] + counts["sent"]

    def append(self, type_: str, priority: str, body: dict) -> int:
        return self.outbox.append(Draft(type_, priority, body))


class RunningIngest(_Running):
    """`Ingest(load_ingest_config(path))` run in a thread. `overrides` replace fields of the
    [ingest] settings, e.g. {"id": "ingest-b"} or {"heartbeat_interval_s": 0.5}."""

    def __init__(self, config_path: Path, *, start: bool = True, **overrides):
        super().__init__()
        config = load_ingest_config(config_path)
        if overrides:
            config = dataclasses.replace(
                config, ingest=dataclasses.replace(config.require_ingest(), **overrides))
        self.config = config
        self.name = f"ingest-{config.require_ingest().id}"
        self.ingest = Ingest(config)
        if start:
            self.start()

    def _service(self):
        return self.ingest

    def stop(self, timeout: float = 10.0) -> None:
        if self.thread is None:
            self.ingest.store.close()
        super().stop(timeout)

    @property
    def link(self):
        return self.ingest.link

    @property
    def stats(self) -> dict:
        return self.ingest.stats


class Services:
    """Starts agents and ingests for one test; `stop_all()` (at teardown) stops them, agents
    first, and re-raises the first failure of any of them."""

    def __init__(self):
        self.started: list[_Running] = []

    def agent(self, config_path: Path, **kw) -> RunningAgent:
        self.started.append(RunningAgent(config_path, **kw))
        return self.started[-1]

    def ingest(self, config_path: Path, **kw) -> RunningIngest:
        self.started.append(RunningIngest(config_path, **kw))
        return self.started[-1]

    def stop_all(self) -> None:
        errors = []
        order = sorted(self.started, key=lambda r: not isinstance(r, RunningAgent))
        for running in order:
            try:
                running.stop()
            except AssertionError as exc:
                errors.append(exc)
        self.started.clear()
        if errors:
            raise errors[0]


# -- reading the files ----------------------------------------------------------------------

def ingest_store_path(site: Site) -> Path:
    return load_ingest_config(site.ingest_config).require_ingest().store_path


def use_store_url(site: Site, url: str) -> None:
    """Point the site's ingest at a PostgreSQL database ([store] url); `site.start_broker()`
    rewrites the file without it."""
    with open(site.ingest_config, "a", encoding="utf-8") as fh:
        fh.write(f'\n[store]\nurl = "{url}"\n')


def ingest_query(site: Site, sql: str, args: tuple = ()) -> list[tuple]:
    """Rows from the ingest's store, SQLite or PostgreSQL (`?` placeholders); none before the
    store exists."""
    settings = load_ingest_config(site.ingest_config).require_ingest()
    if not settings.store_url:
        return _query(settings.store_path, sql, args)
    import psycopg

    with closing(psycopg.connect(settings.store_url, autocommit=True)) as conn:
        try:
            cur = conn.execute(sql.replace("?", "%s"), args or None)
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
        except psycopg.errors.UndefinedTable:
            return []


def _query(path: Path, sql: str, args: tuple = ()) -> list[tuple]:
    if not path.exists():
        return []
    with closing(sqlite3.connect(path, timeout=30)) as conn:
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise


def ingest_store_seqs(site: Site, device: str) -> list[int]:
    """The seqs of `device` in the ingest's store, ascending (each at most once: it is the key)."""
    return [r[0] for r in ingest_query(site, "SELECT seq FROM events WHERE device=? ORDER BY seq",
                                       (device,))]


def ingest_store_payloads(site: Site, device: str) -> list[bytes]:
    return [bytes(r[0]) for r in ingest_query(
        site, "SELECT payload FROM events WHERE device=? ORDER BY seq",
        (device,))]


def ingest_store_rows(site: Site, device: str) -> list[dict]:
    cols = ["seq", "hash", "type", "priority", "payload", "received_at"]
    rows = ingest_query(site, f"SELECT {', '.join(cols)} FROM events WHERE device=? ORDER BY seq",
                        (device,))
    return [dict(zip(cols, r, strict=True)) for r in rows]


def ingest_device(site: Site, device: str) -> dict:
    """The ingest's counters for `device` (zeros before it is first heard of)."""
    cols = ["watermark", "accepted", "duplicates", "rejected", "last_seen"]
    rows = ingest_query(site, f"SELECT {', '.join(cols)} FROM devices WHERE device=?",
                        (device,))
    return dict(zip(cols, rows[0], strict=True)) if rows else dict.fromkeys(cols, 0)


def ingest_rejections(site: Site, device: str | None = None) -> list[dict]:
    sql, args = "SELECT device, seq, reason FROM rejections", ()
    if device is not None:
        sql, args = sql + " WHERE device=?", (device,)
    return [dict(zip(("device", "seq", "reason"), r, strict=True))
            for r in ingest_query(site, sql + " ORDER BY id", args)]


def ingest_alerts(site: Site, device: str, *, open_only: bool = True) -> list[dict]:
    sql = "SELECT kind, detail, opened_at, closed_at FROM alerts WHERE device=?"
    if open_only:
        sql += " AND closed_at IS NULL"
    return [dict(zip(("kind", "detail", "opened_at", "closed_at"), r, strict=True))
            for r in ingest_query(site, sql + " ORDER BY id", (device,))]


def outbox_path(site: Site, device: str) -> Path:
    return load_effective_config(site.devices[device]).outbox_path


def outbox_events(site: Site, device: str) -> list[dict]:
    """Rows still in the device's outbox (not yet pruned), with their payloads."""
    cols = ["seq", "type", "priority", "state", "payload"]
    rows = _query(outbox_path(site, device),
                  f"SELECT {', '.join(cols)} FROM events ORDER BY seq")
    return [dict(zip(cols, r, strict=True)) for r in rows]


def outbox_head(site: Site, device: str) -> int:
    rows = _query(outbox_path(site, device), "SELECT value FROM meta WHERE key='head_seq'")
    return int(rows[0][0]) if rows else 0


def append_offline(site: Site, device: str, drafts: list[Draft], *, threads: int = 1) -> list[int]:
    """Append drafts through a separate Outbox on the device's file, as `cocoon-agent emit`
    does (several threads share one group commit)."""
    config = load_effective_config(site.devices[device])
    outbox, _ = open_outbox(config)
    seqs: list[int] = []
    lock = threading.Lock()

    def work(part):
        for draft in part:
            seq = outbox.append(draft)
            with lock:
                seqs.append(seq)

    try:
        parts = [drafts[i::threads] for i in range(threads)]
        workers = [threading.Thread(target=work, args=(p,)) for p in parts if p]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        outbox.close()
    if len(seqs) != len(drafts):
        raise AssertionError(f"only {len(seqs)} of {len(drafts)} drafts were appended")
    return sorted(seqs)


def cli(tool: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run `cocoon-agent` or `cocoon-ingest` from the venv; output captured as text."""
    return subprocess.run([str(BIN / tool), "--log-level", "warning", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)

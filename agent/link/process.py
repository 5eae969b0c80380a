"""The MQTT link in its own process, seen from the agent.

Why a process: paho's packet handling is pure Python and costs about as much CPU per event as
sealing, signing and committing it. In one process both queue for the same interpreter lock,
so a backlog draining at link speed slows the clerk's sales and the sales slow the drain. In a
child process (agent.link.child) the link has its own interpreter and core, talks to the
outbox through SQLite like `cocoon-agent emit` does, and a fault in it (a hang, a crash) is
contained: the agent notices and starts it again.

`LinkProcess` has the face the rest of the agent knows from MqttLink: `run(stop)` in the
agent's main thread, `status` (connected, auth_failed, last_error, connects...), `loops` for
the watchdog (it moves only while the child's loop reports, so a stuck child stops the
watchdog pings), and `uplink` with the uplink's counters. Commands from the broker come back
through the pipe and are handled by a worker thread here, so a slow handler never stalls the
link.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import selectors
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

from agent.errors import CocoonError
from agent.link.common import Backoff, LinkSettings, LinkStatus
from agent.link.meter import LATENCY_BUCKETS_S
from agent.link.uplink import serve_commands

log = logging.getLogger(__name__)

STOP_WAIT_S = 10.0      # an orderly stop writes the last marks; then the child is killed
STUCK_AFTER_S = 40.0    # a child whose loop has not turned for this long is killed and restarted
# (a connect that times out holds the loop up to twice [mqtt] connack_timeout_s; systemd's
# watchdog, at 60 s, would otherwise restart the whole agent for a fault of the link alone)
RESTART_MIN_S = 1.0     # a child that died is started again after a growing pause
RESTART_MAX_S = 30.0


@dataclass
class UplinkCounters:
    """The child's uplink counters, as last reported."""

    published: int = 0
    pubacked: int = 0
    acked_seq: int = 0
    rejected_acks: int = 0
    stale_acks: int = 0


@dataclass
class PublishCounts:
    """The child's publish meter (agent.link.meter.PublishMeter.snapshot), as last reported."""

    published_bytes: int = 0
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    latency_sum_s: float = 0.0


class LinkProcess:
    def __init__(self, settings: LinkSettings, *, device: str, outbox_path, ingest_public_key_file,
                 window: int, ack_timeout_s: float, on_command=None, log_level: str | None = None,
                 on_fork=None):
        self.settings = settings
        self.status = LinkStatus()
        self.uplink = UplinkCounters()
        self.meter = PublishCounts()
        self.loops = 0
        self.pid: int | None = None
        self.last_bye: dict | None = None   # the last child's final figures
        self.child_started_at: float | None = None  # monotonic time of its first status
        self.on_command = on_command
        self.on_fork = on_fork
        self._spec = {
            "device": device, "outbox": str(outbox_path),
            "settings": {k: str(v) if k.endswith("_file") else v
                         for k, v in asdict(settings).items()},
            "ingest_key": _ingest_key(ingest_public_key_file), "window": window,
            "ack_timeout_s": ack_timeout_s, "commands": on_command is not None,
            "log_level": log_level or logging.getLevelName(logging.getLogger().level),
        }
        self._commands: queue.Queue = queue.Queue()
        self._proc: subprocess.Popen | None = None   # the child now running
        self._restart = Backoff(RESTART_MIN_S, RESTART_MAX_S)
        self._last: dict = {}  # the current child's last status
        self._moved_at = time.monotonic()  # when the current child's loop last turned
        self.stuck_after_s = STUCK_AFTER_S

    # -- the owning loop ----------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Keep a link child running until `stop` is set; then stop it in order."""
        worker = None
        if self.on_command is not None:
            worker = threading.Thread(target=self._command_worker, name="commands", daemon=True)
            worker.start()
        try:
            while not stop.is_set():
                started = time.monotonic()
                code = self._run_child(stop)
                if stop.is_set():
                    break
                self._mark_down(f"link process exited with status {code}")
                log.error("mqtt link process exited with status %s; starting it again", code)
                if time.monotonic() - started > 60:
                    self._restart.reset()
                if stop.wait(self._restart.next_delay()):
                    break
                self.loops += 1
        finally:
            if worker is not None:
                self._commands.put(None)
                worker.join(timeout=STOP_WAIT_S)

    def _run_child(self, stop: threading.Event) -> int:
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}  # ours alone
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_package_root(), os.environ.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.link.child"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env, close_fds=True)
        self.pid = proc.pid
        self._proc = proc
        self._last = {}
        self._moved_at = time.monotonic()
        self.child_started_at = None
        proc.stdin.write((json.dumps(self._spec) + "\n").encode())
        proc.stdin.flush()
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            buffered = b""
            stopping_since = None
            while True:
                if stop.is_set() and stopping_since is None:
                    stopping_since = time.monotonic()
                    self._tell(proc, b"stop\n")
                if stopping_since is not None and time.monotonic() - stopping_since > STOP_WAIT_S:
                    log.warning("mqtt link process did not stop within %.0f s; killing it",
                                STOP_WAIT_S)
                    proc.kill()
                    break
                if stopping_since is None and \
                        time.monotonic() - self._moved_at > self.stuck_after_s:
                    log.error("mqtt link process %s: its loop has not turned for %.0f s; "
                              "killing it", proc.pid, self.stuck_after_s)
                    proc.kill()
                    break
                if not sel.select(timeout=0.1):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break  # the child is gone (or going)
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    self._handle(line)
        code = proc.wait()
        self._proc = None
        proc.stdin.close()
        proc.stdout.close()
        self.pid = None
        self._mark_down("link process stopped" if stop.is_set() else f"exit status {code}")
        return code

    @staticmethod
    def _tell(proc: subprocess.Popen, line: bytes) -> None:
        try:
            proc.stdin.write(line)
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the child has gone already

    def _mark_down(self, reason: str) -> None:
        if self.status.connected:
            self.status.connected = False
            self.status.last_error = reason

    # -- messages from the child ----------------------------------------------------------

    def _handle(self, line: bytes) -> None:
        try:
            message = json.loads(line)
            kind = message.pop("t")
        except (ValueError, KeyError, AttributeError):
            log.warning("mqtt link process: unreadable line %r", line[:200])
            return
        if kind == "status":
            if self.child_started_at is None:
                self.child_started_at = time.monotonic()
            self._apply_status(message)
        elif kind == "command":
            proc, token = self._proc, message.get("ack")

            def ack() -> None:   # to the child that received it, if it still runs
                if proc is not None and proc is self._proc and isinstance(token, int):
                    self._tell(proc, f"ack {token}\n".encode())
            self._commands.put((base64.b64decode(message["payload"]), ack))
        elif kind == "forked" and self.on_fork is not None:
            try:
                self.on_fork(message["seq"], message["hash"], message.get("reason", ""))
            except (CocoonError, KeyError) as exc:
                log.error("could not repair the forked chain: %s", exc)
        elif kind == "bye":
            self.last_bye = message

    def _apply_status(self, m: dict) -> None:
        """Counters are the child's since it started: their growth is added to the totals
        here, so that they keep counting up across a restarted child (Prometheus counters
        must not go back)."""
        s, last = self.status, self._last
        if m["connected"] and not s.connected:
            s.connects += 1
        s.connected, s.auth_failed, s.last_error = m["connected"], m["auth_failed"], m["last_error"]
        s.refused_publishes += m["refused_publishes"] - last.get("refused_publishes", 0)
        for name in ("published", "pubacked", "rejected_acks", "stale_acks"):
            setattr(self.uplink, name, getattr(self.uplink, name) + m[name] - last.get(name, 0))
        self.uplink.acked_seq = max(self.uplink.acked_seq, m["acked_seq"])
        self.meter.published_bytes += m["published_bytes"] - last.get("published_bytes", 0)
        before = last.get("latency_counts") or [0] * len(m["latency_counts"])
        self.meter.latency_counts = [t + n - b for t, n, b in
                                     zip(self.meter.latency_counts, m["latency_counts"], before,
                                         strict=True)]
        self.meter.latency_sum_s += m["latency_sum_s"] - last.get("latency_sum_s", 0.0)
        moved = m["loops"] - last.get("loops", 0)
        if moved > 0:
            self.loops += moved
            self._moved_at = time.monotonic()
        self._last = m

    # -- commands -------------------------------------------------------------------------

    def _command_worker(self) -> None:
        serve_commands(self._commands, self.on_command)


def _ingest_key(path) -> dict:
    """The ingest's key as the link process gets it: read and checked here, so that a bad key
    file is the agent's start-up error, and so that an Ed25519 key reaches the link raw (it
    then verifies acks through libsodium without loading `cryptography`)."""
    from agent.contract.signing import ED25519, Verifier

    verifier = Verifier.from_file(path)
    if verifier.alg == ED25519:
        return {"raw": verifier.raw.hex(), "kid": verifier.kid}
    return {"file": str(path)}


def _package_root() -> str:
    """The folder that holds the `agent` package, so the child imports this very code."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

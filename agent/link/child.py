"""The MQTT link's own process: `python -m agent.link.child`, started by agent.link.process.

It runs the same Uplink and MqttLink as the in-process link, on its own connections to the
outbox: it reads pending rows, publishes them, marks PUBACKed rows sent, and applies the
ingest's verified acks. It never appends an event; commands are passed to the agent, which
verifies and handles them (their acceptance and refusal are events, and only the agent
appends).

Conversation with the agent, one JSON object per line:
- stdin: first the spec (what to connect to, which outbox); then `ack N` once the agent has
  recorded command N (only then is it acknowledged to the broker), and `stop` for an orderly
  stop (the last PUBACK marks are written). End of file means the agent is gone: the process
  exits at once, as if killed, which the outbox is built to survive.
- stdout: `status` (link state and counters, on change and at least every STATUS_EVERY_S; its
  `loops` moves only while the link's loop turns, so the agent's watchdog sees a stuck loop),
  `command` (a payload from the commands topic, base64, and its `ack` number), `forked` (a
  verified ack shows the outbox is older than the bank's copy: the agent, which can sign,
  repairs it), and `bye` (final counters).
- stderr: log lines, in the agent's format, to the same journal.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from agent.contract import logs, topics
from agent.contract.signing import Verifier
from agent.errors import EXPECTED
from agent.link.mqtt import LinkSettings, MqttLink
from agent.link.uplink import Uplink
from agent.spine.outbox import Outbox

log = logging.getLogger("agent.link")

STATUS_EVERY_S = 0.5


class Reporter:
    """Writes the conversation's lines to stdout; one writer at a time."""

    def __init__(self, stream):
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: dict) -> None:
        line = json.dumps(message, separators=(",", ":")) + "\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()


class ReportingHandler:
    """The uplink, telling the agent how the link is doing."""

    def __init__(self, uplink: Uplink, reporter: Reporter):
        self.uplink, self.reporter = uplink, reporter
        self.inner = uplink
        # The busy callbacks go straight to the uplink, without a call through this object.
        self.on_message, self.on_puback, self.on_tick = (
            uplink.on_message, uplink.on_puback, uplink.on_tick)
        self._last: tuple | None = None
        self._last_sent = 0.0

    def status(self, link: MqttLink) -> dict:
        s, up = link.status, self.uplink
        return {"t": "status", "connected": s.connected, "auth_failed": s.auth_failed,
                "last_error": s.last_error, "connects": s.connects,
                "refused_publishes": s.refused_publishes, "loops": link.loops,
                "published": up.published, "pubacked": up.pubacked, "acked_seq": up.acked_seq,
                "rejected_acks": up.rejected_acks, "stale_acks": up.stale_acks,
                **up.meter.snapshot()}

    def report(self, link: MqttLink, *, force: bool = False) -> None:
        status = self.status(link)
        key = tuple(v for k, v in status.items() if k != "loops")
        now = time.monotonic()
        if force or key != self._last or now - self._last_sent >= STATUS_EVERY_S:
            self._last, self._last_sent = key, now
            self.reporter.send(status)

    def on_connected(self, link) -> None:
        self.inner.on_connected(link)
        self.report(link, force=True)

    def on_disconnected(self, link, reason: str) -> None:
        self.inner.on_disconnected(link, reason)
        self.report(link, force=True)

    def report_until(self, link: MqttLink, stop: threading.Event) -> None:
        """Report from a thread of its own, so that the agent hears of failed connects and
        backoff too; `loops` in the status moves only while the link's loop turns."""
        while not stop.wait(0.1):
            self.report(link)


def _io_write_bytes() -> int:
    try:
        fields = dict(line.split(": ") for line in
                      Path("/proc/self/io").read_text().splitlines())
        return int(fields["write_bytes"]) - int(fields["cancelled_write_bytes"])
    except (OSError, KeyError, ValueError):
        return 0


def _proc_kib(path: str, key: str) -> int:
    """A `Key:  N kB` figure of this process from /proc (0 where the kernel has none)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _ingest_verifier(key: dict) -> Verifier:
    if "raw" in key:
        return Verifier.from_raw_ed25519(bytes.fromhex(key["raw"]), key["kid"])
    return Verifier.from_file(key["file"])  # an ES256 key: that needs `cryptography`


def _watch_stdin(stop: threading.Event, acks: dict) -> None:
    """`stop` asks for an orderly stop; `ack N`, that the agent has recorded command N (it
    is acknowledged to the broker); end of file means the agent died: leave at once, with
    the commands it did not record unacknowledged, so that the broker sends them again."""
    for line in sys.stdin:
        word, _, arg = line.strip().partition(" ")
        if word == "stop":
            stop.set()
            return
        if word == "ack" and arg.isdigit():
            ack = acks.pop(int(arg), None)
            if ack is not None:
                ack()
    os._exit(0)


def run(spec: dict) -> int:
    reporter = Reporter(sys.stdout)
    settings = LinkSettings(**{k: Path(v) if k.endswith("_file") else v
                               for k, v in spec["settings"].items()})
    # The agent opened (and if need be migrated or recovered) the outbox before starting us.
    outbox = Outbox(spec["outbox"], device=spec["device"], signer=None)

    acks: dict[int, object] = {}
    tokens = iter(range(1, 1 << 62))

    def forward(payload: bytes, ack) -> None:
        token = next(tokens)
        acks[token] = ack
        reporter.send({"t": "command", "payload": base64.b64encode(payload).decode(),
                       "ack": token})

    uplink = Uplink(spec["device"], outbox, _ingest_verifier(spec["ingest_key"]),
                    window=spec["window"], ack_timeout_s=spec["ack_timeout_s"],
                    on_command=forward if spec.get("commands") else None,
                    commands_worker=False,
                    on_fork=lambda seq, digest, reason: reporter.send(
                        {"t": "forked", "seq": seq, "hash": digest, "reason": reason}))
    handler = ReportingHandler(uplink, reporter)
    commands = topics.commands(spec["device"])
    link = MqttLink(settings, handler, acks_later=lambda topic: topic == commands)
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stop, acks), name="agent-pipe",
                     daemon=True).start()
    threading.Thread(target=handler.report_until, args=(link, stop), name="link-status",
                     daemon=True).start()
    handler.report(link, force=True)  # started: the agent may count from here
    try:
        link.run(stop)
    finally:
        uplink.close()
        outbox.close()
        handler.report(link, force=True)
        reporter.send({"t": "bye", "write_bytes": _io_write_bytes(),
                       "peak_rss_kib": _proc_kib("/proc/self/status", "VmHWM:"),
                       # proportional set size: pages shared with the agent count in part
                       "pss_kib": _proc_kib("/proc/self/smaps_rollup", "Pss:")})
    return 0


def main() -> int:
    # The agent stops this process (a line on its input, or the input's end). A Ctrl-C at the
    # terminal reaches the whole process group: it must neither cut the link short nor print a
    # KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    spec = json.loads(sys.stdin.readline())
    logs.setup(spec.get("log_level", "INFO"), journal=spec.get("journal"), expected=EXPECTED)
    return run(spec)


if __name__ == "__main__":
    sys.exit(main())

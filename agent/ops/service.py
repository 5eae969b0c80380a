"""The running agent: wires configuration, keys, outbox, uplink and the periodic producers.

Threads: the MQTT link (by default a watcher of the link's own process, which owns paho and
feeds the outbox to the broker), the command worker, the heartbeat, and the parts' producers.
Producers only call `Outbox.append`, which is safe from any thread and any process.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.config import AgentConfig
from agent.contract import topics
from agent.contract.clock import wall_clock_synced
from agent.contract.commands import BACKEND, BANK
from agent.contract.events import Draft
from agent.contract.signing import Verifier, load_device_signer
from agent.errors import OutboxBusy, OutboxError, OutboxFull
from agent.fleet.remote_config import RESTART_EXIT_CODE, RemoteConfig, RestartRequested
from agent.fleet.time_hint import time_hint_handler
from agent.link.common import LinkSettings
from agent.link.process import LinkProcess
from agent.link.uplink import Uplink
from agent.ops.sdnotify import Notifier, Watchdog, watchdog_interval_s
from agent.spine import recovery
from agent.spine.dispatcher import Dispatcher
from agent.spine.holder import OutboxHolder
from agent.spine.outbox import Outbox, high_water_path, room_to_open

log = logging.getLogger(__name__)

RENEW_WITHIN_DAYS = 30      # renew the TLS certificate once it expires within this
RENEWAL_CHECK_S = 6 * 3600


def open_outbox(config: AgentConfig, signer=None, holder: OutboxHolder | None = None
                ) -> tuple[Outbox, recovery.Salvage | None]:
    """Open the device's outbox, quarantining it first if it fails its integrity check (or
    completing a quarantine that a crash cut short).

    Only the outbox's holder quarantines: the agent passes its `holder`; any other caller
    (`emit`, a command) takes the lock for the time of the quarantine, and refuses with
    OutboxBusy while a running agent holds it."""
    signer = signer or load_device_signer(config.device)
    path = config.outbox_path
    room_to_open(path)
    interrupted = recovery.interrupted(path)
    problem = None if interrupted else recovery.check(path)
    if not problem and not interrupted:
        return _open(config, signer), None
    own = holder is None
    holder = holder or OutboxHolder(path)
    if not holder.try_acquire():
        pid = holder.holder_pid()
        raise OutboxBusy(
            f"{path} failed its integrity check ({(problem or 'quarantine unfinished')[:200]})"
            f" and the running agent{f' (pid {pid})' if pid else ''} holds it: nothing was "
            "recorded. Restart the agent (systemctl restart cocoon-agent); it will quarantine "
            "the outbox, keeping what can still be read. Then try again.")
    salvage = None
    try:
        recovery.finish(path)
        problem = recovery.check(path)
        if problem:
            salvage = recovery.quarantine(
                path, lambda where: _open(config, signer, where),
                lambda found: Draft("outbox.quarantined", "alert", {
                    "problem": problem[:500],
                    "moved_to": found.quarantined_to.name,
                    "salvaged_events": len(found.rows),
                    "chain_continues_from": found.head_seq,
                    "read_errors": [e[:200] for e in found.errors],
                }))
        return _open(config, signer), salvage
    finally:
        if own:
            holder.release()


def _open(config: AgentConfig, signer, path: Path | None = None) -> Outbox:
    return Outbox(
        path or config.outbox_path,
        high_water=high_water_path(config.outbox_path),
        device=config.device.id,
        signer=signer,
        capacity_bytes=config.outbox.capacity_bytes,
        alert_reserve_bytes=config.outbox.alert_reserve_bytes,
        telemetry_batch_ms=config.outbox.telemetry_batch_ms,
    )


def build_link(config: AgentConfig, outbox: Outbox, *, on_command=None):
    """The MQTT link as `[mqtt] link` asks: in its own process (the default; see
    agent.link.process) or in a thread of this one. Returns the link (`run(stop)`, `status`,
    `loops`), the uplink's counters (`published`, `pubacked`, `acked_seq`...) and a function
    that returns the publish meter's snapshot."""
    settings = LinkSettings.from_config(config.device.id, config.mqtt)
    ingest_key = config.keys.ingest_public_key_file
    if config.mqtt.link == "process":
        link = LinkProcess(
            settings, device=config.device.id, outbox_path=outbox.path,
            ingest_public_key_file=ingest_key, window=config.mqtt.inflight,
            ack_timeout_s=config.mqtt.ack_timeout_s, on_command=on_command,
            on_fork=outbox.resume_after)
        return link, link.uplink, lambda: asdict(link.meter)
    from agent.link.mqtt import MqttLink  # paho and TLS only where the link runs

    uplink = Uplink(config.device.id, outbox, Verifier.from_file(ingest_key),
                    window=config.mqtt.inflight, ack_timeout_s=config.mqtt.ack_timeout_s,
                    on_command=on_command, on_fork=outbox.resume_after)
    commands = topics.commands(config.device.id)
    return (MqttLink(settings, uplink, acks_later=lambda topic: topic == commands), uplink,
            uplink.meter.snapshot)


@dataclass
class Periodic:
    """Run `fn` every `interval_s` until stopped, measuring from the monotonic clock."""

    name: str
    interval_s: float
    fn: object

    def start(self, stop: threading.Event) -> threading.Thread:
        def loop():
            next_at = time.monotonic()
            while not stop.is_set():
                try:
                    self.fn()
                except Exception:
                    log.exception("%s failed", self.name)
                next_at += self.interval_s
                stop.wait(max(0.0, next_at - time.monotonic()))

        thread = threading.Thread(target=loop, name=self.name, daemon=True)
        thread.start()
        return thread


class Agent:
    def __init__(self, config: AgentConfig):
        self.config = config
        self.signer = load_device_signer(config.device)
        # Held while this agent runs: no other process quarantines the outbox under it.
        self.holder = OutboxHolder(config.outbox_path)
        if not self.holder.try_acquire():
            pid = self.holder.holder_pid()
            raise OutboxBusy(f"another agent{f' (pid {pid})' if pid else ''} is running on "
                             f"{config.outbox_path}; stop it first (systemctl stop "
                             "cocoon-agent)")
        try:
            self._build(config)
        except BaseException:
            self.holder.release()
            raise

    def _build(self, config: AgentConfig) -> None:
        self.outbox, _ = open_outbox(config, self.signer, self.holder)
        keys = config.keys
        verifiers = {
            BANK: _optional_verifier(keys.bank_public_key_file),
            BACKEND: _optional_verifier(keys.backend_public_key_file),
        }
        self.dispatcher = Dispatcher(config.device.id, self.outbox, verifiers)
        # A configuration on trial counts this start (and is rolled back after too many):
        # before any part is built, so a part that fails to start still counts.
        self.remote_config = RemoteConfig(config, self.outbox)
        try:
            self.remote_config.begin()
        except RestartRequested:
            self.outbox.close()
            raise
        self.dispatcher.register("config.set", self.remote_config.handle)
        self.dispatcher.register("time.hint", time_hint_handler(self.outbox))
        self.exit_code = 0
        self.link, self.uplink, self.publish_counts = build_link(
            config, self.outbox, on_command=self.dispatcher.handle)
        self._started = time.monotonic()
        self.producers: list[Periodic] = [
            Periodic("heartbeat", config.device.heartbeat_interval_s, self.heartbeat),
            Periodic("certificate-renewal", RENEWAL_CHECK_S, self.renew_certificate_if_due),
        ]
        if config.simulate.enabled:
            from agent.demo.simulated_scale import SimulatedScale

            scale = SimulatedScale(self.outbox)
            self.producers.append(Periodic("simulated-scale", config.simulate.interval_s,
                                           scale.step))

        # Parts (the station, the warehouse...) built from their configuration sections; each
        # has start(stop) and close(), and registers its command handlers on the dispatcher.
        self.parts = [_load_part(name)(self) for name in PARTS if config.plugged.get(name)]

    def heartbeat(self) -> int | None:
        stats = self.outbox.stats()
        oldest = stats.oldest_pending_age_s
        try:
            return self.outbox.append(Draft("device.heartbeat", "telemetry", {
                "uptime_s": int(time.monotonic() - self._started),
                "outbox_depth": stats.counts["pending"] + stats.counts["sent"],
                "oldest_pending_age_s": None if oldest is None else int(oldest),
                "outbox_used_bytes": stats.used_bytes,
                "clock_synced": wall_clock_synced(),
                "link_connected": self.link.status.connected,
            }))
        except OutboxFull:   # the outbox has reported the full disk once; no heartbeat then
            return None

    def _restart_when_asked(self, stop: threading.Event) -> None:
        """A new configuration was accepted or rolled back: stop, so that the service
        manager starts the agent again with it (exit status RESTART_EXIT_CODE)."""
        while not stop.is_set():
            if self.remote_config.restart_requested.wait(0.5):
                self.exit_code = RESTART_EXIT_CODE
                log.warning("agent: restarting to apply a configuration change")
                stop.set()
                return

    def renew_certificate_if_due(self) -> bool:
        """Renew the TLS certificate over the same path as enrolment once it expires within
        RENEW_WITHIN_DAYS; the link picks the new one up at its next connection."""
        from agent.fleet.enrolment import ClaimSettings, EnrolmentError, days_left, renew

        mqtt = self.config.mqtt
        try:
            left = days_left(mqtt.cert_file)
        except (OSError, ValueError) as exc:
            log.warning("certificate: cannot read %s: %s", mqtt.cert_file, exc)
            return False
        if left > RENEW_WITHIN_DAYS:
            return False
        try:
            result = renew(self.config.device.id, self.signer,
                           current=ClaimSettings(mqtt.host, mqtt.port, mqtt.ca_file,
                                                 mqtt.cert_file, mqtt.key_file),
                           new_key_file=mqtt.key_file, cert_out=mqtt.cert_file)
        except (EnrolmentError, OSError) as exc:
            log.warning("certificate: renewal failed (%.1f days left): %s", left, exc)
            self.outbox.append(Draft("certificate.renewal_failed", "alert", {
                "days_left": str(round(left, 1)), "reason": str(exc)[:300]}))
            return False
        self.outbox.append(Draft("certificate.renewed", "alert", {
            "previous_days_left": str(round(left, 1)),
            "days_left": str(result["days_left"])}))
        return True

    def progress(self) -> tuple[int, int]:
        """Moves while the agent works: the link loop turns and the outbox answers."""
        return self.link.loops, self.outbox.head_seq()

    def run(self, stop: threading.Event, notifier: Notifier | None = None) -> None:
        notifier = notifier or Notifier()
        log.info("agent %s starting; outbox %s", self.config.device.id, self.outbox.path)
        try:
            # `signature`: how this agent signs (ES256 with low s: one signature per event),
            # so that the ingest may refuse another form of this device's later events.
            self.outbox.append(Draft("agent.started", "telemetry", {
                "version": _version(), "signature": {"low_s": True}}))
        except OutboxError as exc:  # a full disk: the link must still run to send and prune
            log.error("agent.started not recorded: %s", exc)
        if self.config.unknown_keys:
            # Logged when the file was read; the bank hears of it once per start.
            self.outbox.append(Draft("config.unknown_keys", "alert", {
                "file": str(self.config.path),
                "keys": [key.as_dict() for key in self.config.unknown_keys]}))
        for producer in self.producers:
            producer.start(stop)
        for part in self.parts:
            part.start(stop)
        interval = watchdog_interval_s()
        if interval:
            Watchdog(notifier, interval, self.progress).start(stop)
        threading.Thread(target=self.remote_config.watch, name="config-trial", daemon=True,
                         args=(stop, lambda: self.link.status.connected)).start()
        threading.Thread(target=self._restart_when_asked, args=(stop,), daemon=True,
                         name="config-restart").start()
        notifier.ready(f"device {self.config.device.id}")
        try:
            self.link.run(stop)
        finally:
            notifier.stopping()
            for part in reversed(self.parts):
                part.close()
            if isinstance(self.uplink, Uplink):
                self.uplink.close()
            self.outbox.close()
            self.holder.release()


#: Optional parts of the agent, started when their configuration section is present:
#: section name -> "module:factory", factory(agent) -> an object with start(stop) and close().
PARTS: dict[str, str] = {
    "warehouse": "agent.warehouse.service:part",
    "station": "agent.station.part:StationPart",
    # After the station: parts close in reverse, so the screen stops reading it first.
    "screen": "agent.screen.server:ScreenPart",
    "metrics": "agent.ops.metrics:MetricsPart",
}


def _load_part(name: str):
    import importlib

    module, _, factory = PARTS[name].partition(":")
    return getattr(importlib.import_module(module), factory)


def _optional_verifier(path):
    return Verifier.from_file(path) if path else None


def _version() -> str:
    from agent import __version__

    return __version__

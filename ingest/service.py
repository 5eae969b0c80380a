"""The running ingest: a shared subscription to every device's events, a durable store, and
signed cumulative acks on each device's (retained) acks topic.

Messages are stored in batches (one fsync per batch) and acks are published only after the
batch is committed. Several workers may share one stream through the MQTT shared subscription
`$share/<group>/cocoon/v1/+/events`; see docs/ingest.md.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from agent.contract import topics
from agent.contract.acks import make_ack
from agent.contract.signing import load_signer
from agent.link.mqtt import LinkSettings, MqttLink

from .config import IngestConfig
from .registry import DeviceRegistry
from .store import ACCEPTED, open_store

log = logging.getLogger(__name__)

SILENT = "device.silent"


class Ingest:
    """Link handler: everything runs in the link's thread."""

    def __init__(self, config: IngestConfig, *, echo=None, batch_max: int = 500):
        self.config = config
        self.settings = config.require_ingest()
        self.signer = load_signer(self.settings.signing_key_file)
        self.registry = DeviceRegistry(self.settings.devices_dir)
        self.store = open_store(self.settings)
        self.listening_since: float | None = None   # when the link last came up
        self.echo = echo
        self.batch_max = batch_max
        self._inbox: list[tuple[str, bytes]] = []
        self._last_silence_check = 0.0
        self.stats = {"accepted": 0, "duplicate": 0, "rejected": 0, "forked": 0, "acks": 0}
        self.link = MqttLink(LinkSettings.from_config(self.settings.client_id, config.mqtt), self)

    @property
    def subscription(self) -> str:
        return f"$share/{self.settings.group}/{topics.PREFIX}/+/events"

    def run(self, stop: threading.Event) -> None:
        log.info("ingest %s starting; store %s", self.settings.id, self.store.where)
        try:
            self.link.run(stop)
        finally:
            self.store.close()

    # -- link handler -------------------------------------------------------------------

    def on_connected(self, link) -> None:
        link.subscribe(self.subscription, qos=1)
        self.listening_since = time.time()

    def on_disconnected(self, link, reason: str) -> None:
        # Messages already received stay in the inbox and are stored at the next tick.
        self.listening_since = None

    def on_message(self, link, topic: str, payload: bytes, retain: bool) -> None:
        self._inbox.append((topic, payload))

    def on_puback(self, link, mid: int, reason_code: int) -> None:
        if reason_code >= 0x80:
            log.error("ingest: broker refused an ack (reason code %d); check the ACL", reason_code)

    def on_tick(self, link) -> None:
        while self._inbox:
            batch, self._inbox = self._inbox[: self.batch_max], self._inbox[self.batch_max:]
            self._store_and_ack(link, batch)
        now = time.monotonic()
        if now - self._last_silence_check >= min(1.0, self.settings.heartbeat_interval_s):
            self._last_silence_check = now
            self.check_silence()

    # -- work ------------------------------------------------------------------------------

    def _store_and_ack(self, link, batch) -> None:
        outcomes, moved = self.store.process_batch(batch, self.registry)
        for o in outcomes:
            self.stats[o.status] += 1
            if o.status == ACCEPTED:
                log.info("ingest: verified %s seq %d %s (%s)", o.device, o.seq, o.type,
                         o.priority)
                if self.store.close_alerts(o.device, SILENT):
                    log.warning("ingest: device %s is heard again", o.device)
            if self.echo and o.status == ACCEPTED:
                self.echo(f"verified {o.device} seq {o.seq} {o.type} ({o.priority})")
        for device, (seq, digest) in moved.items():
            if seq == 0:
                continue
            ack = make_ack(device, seq, digest, self.signer)
            link.publish(topics.acks(device), json.dumps(ack).encode(), qos=1, retain=True)
            self.stats["acks"] += 1
            log.info("ingest: acknowledged %s up to seq %d", device, seq)
            if self.echo:
                self.echo(f"acked    {device} up to seq {seq}")

    def check_silence(self) -> None:
        """Alert for each device silent longer than the limit, judged only once the ingest
        itself has listened that long: after an outage of the ingest, every device looks
        silent until its queued events arrive, which is not the devices' fault."""
        limit = self.settings.heartbeat_interval_s * self.settings.silence_intervals
        now = time.time()
        if self.listening_since is None or now - self.listening_since < limit:
            return
        for dev in self.store.devices():
            silent_for = now - (dev["last_seen"] or 0)
            if silent_for > limit and self.store.open_alert(
                    dev["device"], SILENT, f"no event for {int(silent_for)} s"):
                log.warning("ingest: ALERT device %s silent for %d s (limit %d s)",
                            dev["device"], silent_for, limit)

"""The running ingest: a shared subscription to every device's events, a durable store, and
signed cumulative acks on each device's (retained) acks topic.

Messages are stored in batches (one transaction per batch), acknowledged to the broker only
once that transaction is committed (a worker killed before keeps nothing the broker forgot:
the broker sends the messages again on its next connection, and the device sends again what
the bank never acknowledged), and the signed acks are published after the commit, with the
watermark the database holds then. Several workers may share one stream through the MQTT shared
subscription `$share/<group>/cocoon/v1/+/events` and one database; see docs/ingest.md.

A batch that fails to be stored is logged with its cause and retried with a backoff; the worker
does not stop. After a failure the messages are tried one at a time, and one that still fails
while the database answers (a poison message) is parked, with the reason, in the `parked`
table, so that the device's other events go on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.contract import topics
from agent.contract.acks import make_ack
from agent.contract.signing import load_signer
from agent.link.mqtt import LinkSettings, MqttLink

from .config import IngestConfig
from .registry import DeviceRegistry
from .store import ACCEPTED, open_store

log = logging.getLogger(__name__)

SILENT = "device.silent"
RETRY_MIN_S, RETRY_MAX_S = 0.1, 10.0   # the backoff after a batch failed to be stored
POISON_TRIES = 3                        # failures, the database answering, before parking
PUBACK_WAIT_S = 5.0                     # how long acks hold their devices' locks at most


@dataclass
class Received:
    """A message waiting to be stored; `ack` tells the broker it is done with."""

    topic: str
    payload: bytes
    ack: Callable[[], None]
    failures: int = 0


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
        self._inbox: list[Received] = []
        self._last_silence_check = 0.0
        self._failures = 0          # batches failed in a row: the backoff
        self._retry_at = 0.0        # no storing before this (monotonic)
        self._one_by_one = 0        # messages left to try one at a time after a failure
        self._awaiting: set[int] = set()  # acks published, their PUBACK not yet seen
        self.stats = {"accepted": 0, "duplicate": 0, "rejected": 0, "forked": 0, "acks": 0,
                      "store_failures": 0, "parked": 0}
        self.link = MqttLink(LinkSettings.from_config(self.settings.client_id, config.mqtt), self,
                             acks_later=lambda topic: True)

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
        self._inbox.append(Received(topic, payload, link.defer_ack()))

    def on_puback(self, link, mid: int, reason_code: int) -> None:
        self._awaiting.discard(mid)
        if reason_code >= 0x80:
            log.error("ingest: broker refused an ack (reason code %d); check the ACL", reason_code)

    def on_tick(self, link) -> None:
        # What is here now, not what arrives while acks are awaited (the link is pumped then):
        # the tick ends, so that a stop and the silence check are not put off under load.
        left = len(self._inbox)
        while left > 0 and self._inbox and time.monotonic() >= self._retry_at:
            size = min(1 if self._one_by_one else self.batch_max, left)
            if not self._store_and_ack(link, self._inbox[:size]):
                break
            left -= size
        now = time.monotonic()
        if now - self._last_silence_check >= min(1.0, self.settings.heartbeat_interval_s):
            self._last_silence_check = now
            try:
                self.check_silence()
            except Exception as exc:      # the store is away: judged again at the next tick
                log.warning("ingest: silence check failed: %s", exc)

    # -- work ------------------------------------------------------------------------------

    def _store_and_ack(self, link, batch: list[Received]) -> bool:
        """Store `batch` and acknowledge it; False if it failed (and is kept to try again)."""
        try:
            outcomes, moved = self.store.process_batch([(m.topic, m.payload) for m in batch],
                                                       self.registry)
        except Exception as exc:
            self._failed(batch, exc)
            return False
        del self._inbox[:len(batch)]
        self._failures = 0
        self._one_by_one = max(0, self._one_by_one - len(batch))
        for m in batch:
            m.ack()
        heard = set()
        for o in outcomes:
            self.stats[o.status] += 1
            if o.status == ACCEPTED:
                heard.add(o.device)
                log.info("ingest: verified %s seq %d %s (%s)", o.device, o.seq, o.type,
                         o.priority)
                if self.echo:
                    self.echo(f"verified {o.device} seq {o.seq} {o.type} ({o.priority})")
        try:
            for device in sorted(heard):
                if self.store.close_alerts(device, SILENT):
                    log.warning("ingest: device %s is heard again", device)
            # What the database holds now (another worker may have moved a watermark since
            # this batch's transaction), published under the devices' locks.
            if moved:
                with self.store.acknowledging(moved) as marks:
                    self._await_pubacks(link, self._publish_acks(link, marks))
        except ConnectionError:
            raise
        except Exception as exc:  # the store went away after the commit: what the batch saw
            log.warning("ingest: after storing a batch: %s", exc)
            self._publish_acks(link, moved)
        return True

    def _failed(self, batch: list[Received], exc: Exception) -> None:
        self.stats["store_failures"] += 1
        self._failures += 1
        answers = self.store.answers()
        if len(batch) == 1 and answers:
            message = batch[0]
            message.failures += 1
            if message.failures >= POISON_TRIES:
                self._park(message, exc)
                return
        delay = min(RETRY_MAX_S, RETRY_MIN_S * 2 ** (self._failures - 1))
        self._retry_at = time.monotonic() + delay
        if answers:
            # Try this batch's messages one at a time, to find the one that fails.
            self._one_by_one = max(self._one_by_one, len(batch))
        log.error("ingest: storing %d message(s) failed (%s: %s)%s; trying again in %.1f s",
                  len(batch), type(exc).__name__, " ".join(str(exc).split())[:300],
                  "" if answers else "; the store does not answer", delay)

    def _park(self, message: Received, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        try:
            row = self.store.park(message.topic, message.payload, reason, self.settings.worker)
        except Exception as park_exc:
            log.error("ingest: could not park a message of %s either: %s", message.topic,
                      park_exc)
            self._retry_at = time.monotonic() + RETRY_MAX_S
            return
        self._inbox.remove(message)
        self._one_by_one = max(0, self._one_by_one - 1)
        self._failures = 0
        message.ack()
        self.stats["parked"] += 1
        log.error("ingest: parked a message of %s that failed %d times (parked id %d): %s",
                  message.topic, message.failures, row, reason[:300])

    def _publish_acks(self, link, moved: dict[str, tuple[int, str]]) -> set[int]:
        mids = set()
        for device, (seq, digest) in sorted(moved.items()):
            if seq == 0:
                continue
            ack = make_ack(device, seq, digest, self.signer)
            mids.add(link.publish(topics.acks(device), json.dumps(ack).encode(), qos=1,
                                  retain=True))
            self.stats["acks"] += 1
            log.info("ingest: acknowledged %s up to seq %d", device, seq)
            if self.echo:
                self.echo(f"acked    {device} up to seq {seq}")
        return mids

    def _await_pubacks(self, link, mids: set[int]) -> None:
        """Wait (pumping the link) until the broker has taken the acks `mids`: it has then
        handed them on, so that an ack another worker publishes once the devices' locks are
        released reaches the devices after these, never before."""
        self._awaiting = set(mids)
        deadline = time.monotonic() + PUBACK_WAIT_S
        while self._awaiting and time.monotonic() < deadline and link.pump(0.01):
            pass
        if self._awaiting:
            log.warning("ingest: the broker did not confirm %d ack(s) within %.0f s",
                        len(self._awaiting), PUBACK_WAIT_S)
        self._awaiting = set()

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

"""Store-and-forward: moves events from the outbox to the broker and acks back into it.

Runs as the MqttLink handler, in the link's thread. It keeps paho's window small (paho scans its
in-flight list on every PUBACK) and feeds it from the outbox: events appended since the link came
up ("live") go first, but at least a quarter of every refill comes from the backlog so an old
backlog is never starved. A PUBACK only marks a row sent; the row is forgotten after a verified
ack from the ingest. Rows sent but not acknowledged go out again after a reconnect or after
`ack_timeout_s`. Commands are handed to a worker thread so that a slow handler never stalls the
link. PUBACK latencies and bytes published are counted in `meter` (agent.link.meter).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque

from agent.contract import topics
from agent.contract.acks import parse_ack
from agent.contract.clock import parse_utc_timestamp, time_note
from agent.contract.signing import Verifier
from agent.errors import ChainForked, CocoonError, StaleAck
from agent.link.meter import PublishMeter

log = logging.getLogger(__name__)

PREFETCH = 512  # rows read from the outbox at a time, per stream
MARK_BATCH = 1024  # PUBACKs written as sent in one statement (or after half a second)


class Uplink:
    def __init__(self, device: str, outbox, ingest_verifier: Verifier, *, window: int = 32,
                 ack_timeout_s: float = 60.0, on_command=None, commands_worker: bool = True,
                 meter: PublishMeter | None = None, on_fork=None):
        #: on_fork(seq, hash, reason): a verified ack shows that the bank holds a chain this
        #: outbox does not (an older copy was put back): the agent repairs it
        #: (Outbox.resume_after). Without it the ack is refused, as any other.
        self.on_fork = on_fork
        self.device = device
        self.outbox = outbox
        self.verifier = ingest_verifier
        self.window = window
        self.ack_timeout_s = ack_timeout_s
        self.on_command = on_command
        self.meter = meter or PublishMeter()
        self._inflight: dict[int, tuple[int, float]] = {}  # mid -> (seq, when published)
        self._acked_mids: list[int] = []
        self._live_mark = 0
        self._backlog_cursor = 0
        self._live_cursor = 0
        self._backlog_buf: deque = deque()
        self._live_buf: deque = deque()
        self._last_flush = time.monotonic()
        self._last_timeout_check = time.monotonic()
        self.published = 0
        self.pubacked = 0  # PUBACKs received (the broker has it; not yet the bank)
        self.acked_seq = 0
        self._ingest_time_noted = -60.0
        self.rejected_acks = 0
        self.stale_acks = 0
        # PUBACK marks are written by their own thread: an UPDATE of a few hundred rows, and
        # now and then the WAL checkpoint it triggers, must not stall the link's thread.
        self._marks: queue.Queue = queue.Queue()
        self._marker = threading.Thread(target=self._mark_worker, name="uplink-marks",
                                        daemon=True)
        self._marker.start()
        self._commands: queue.Queue | None = None
        if on_command is not None and commands_worker:
            self._commands = queue.Queue()
            self._worker = threading.Thread(target=self._command_worker, name="commands",
                                            daemon=True)
            self._worker.start()

    # -- link events ----------------------------------------------------------------------

    def on_connected(self, link) -> None:
        link.subscribe(topics.acks(self.device), qos=1)
        if self.on_command is not None:
            link.subscribe(topics.commands(self.device), qos=1)
        self._inflight.clear()
        self._acked_mids.clear()
        self._marks.join()  # marks from the previous connection land before the requeue
        requeued = self._requeue()
        if requeued:
            log.info("uplink: %d sent-but-unacknowledged events will be sent again", requeued)
        self._reset_cursors()

    def on_disconnected(self, link, reason: str) -> None:
        self._flush_pubacks(force=True)
        self._inflight.clear()

    def on_message(self, link, topic: str, payload: bytes, retain: bool) -> None:
        if topic == topics.acks(self.device):
            self._handle_ack(payload)
        elif topic == topics.commands(self.device) and self.on_command is not None:
            # Acknowledged to the broker only once the agent has recorded it (accepted or
            # refused): until then the broker keeps it for the device's session.
            ack = link.defer_ack()
            if self._commands is not None:
                self._commands.put((payload, ack))
            else:
                self.on_command(payload, ack)
        else:
            log.warning("uplink: message on unexpected topic %s ignored", topic)

    def on_puback(self, link, mid: int, reason_code: int) -> None:
        sent = self._inflight.pop(mid, None)
        if sent is None:
            return
        seq, published_at = sent
        if reason_code >= 0x80:
            log.error("uplink: broker refused event seq %d (reason code %d%s); it stays queued",
                      seq, reason_code, ", not authorized: check the broker ACL" if
                      reason_code == 135 else "")
            return
        self._acked_mids.append(seq)
        self.pubacked += 1
        self.meter.acknowledged(time.monotonic() - published_at)

    def on_tick(self, link) -> None:
        self._flush_pubacks()
        now = time.monotonic()
        if now - self._last_timeout_check >= min(5.0, self.ack_timeout_s / 2):
            self._last_timeout_check = now
            if self._requeue(self.ack_timeout_s):
                log.info("uplink: no ack within %.0f s; sending again", self.ack_timeout_s)
                self._read_again()
            elif not self._inflight:
                self._read_again()  # picks up events the broker refused earlier
        self._fill(link)

    # -- internals ------------------------------------------------------------------------

    def _reset_cursors(self) -> None:
        """Start reading both streams again from the outbox, on a new connection: every
        event so far is backlog, and live is what is appended from now on."""
        self._live_mark = self.outbox.head_seq()
        self._read_again()

    def _read_again(self) -> None:
        """Read both streams again from their starts, for rows made pending again, keeping
        which events are live: an event appended since the link came up still goes ahead of
        the backlog (only a new connection makes the events so far part of the backlog)."""
        # Rows PUBACKed but not yet marked would be read back as pending and sent again.
        self._flush_pubacks(force=True)
        self._backlog_cursor = self.outbox.acked_seq()
        self._live_cursor = max(self._live_mark, self._backlog_cursor)
        self._backlog_buf.clear()
        self._live_buf.clear()

    def _requeue(self, older_than_s: float | None = None) -> int:
        """Sent rows made pending again; 0 when the outbox cannot write it (a full disk: the
        link goes on sending what is pending, and the acks prune)."""
        try:
            return self.outbox.requeue_sent(older_than_s)
        except CocoonError as exc:
            log.warning("uplink: could not requeue sent events: %s", exc)
            return 0

    def _flush_pubacks(self, force: bool = False) -> None:
        # Marking rows sent needs no hurry (a row not yet marked is at worst sent again), so
        # PUBACKs are written in batches rather than one transaction per tick; once nothing is
        # in flight the link is idle, and the last marks go out without waiting half a second.
        waited = time.monotonic() - self._last_flush
        due = force or len(self._acked_mids) >= MARK_BATCH or waited >= 0.5 or (
            not self._inflight and waited >= 0.05)
        if self._acked_mids and due:
            self._marks.put(self._acked_mids)
            self._acked_mids = []
            self._last_flush = time.monotonic()
        if force:
            self._marks.join()  # the caller reads or requeues rows next: marks must be written

    def _mark_worker(self) -> None:
        while True:
            seqs = self._marks.get()
            try:
                if seqs is None:
                    return
                self.outbox.mark_sent(seqs)
            except Exception as exc:  # the rows stay pending and are sent again: no loss
                log.error("uplink: could not mark %d events sent: %s", len(seqs), exc)
            finally:
                self._marks.task_done()

    def _fill(self, link) -> None:
        """Top the window up: live events first, at least a quarter of it from the backlog."""
        room = self.window - len(self._inflight)
        if room <= 0:
            return
        if not self._backlog_buf and self._backlog_cursor < self._live_mark:
            rows = self.outbox.pending(PREFETCH, after=self._backlog_cursor, upto=self._live_mark)
            self._backlog_buf.extend(rows)
            self._backlog_cursor = rows[-1].seq if rows else self._live_mark
        if not self._live_buf:
            rows = self.outbox.pending(PREFETCH, after=self._live_cursor)
            self._live_buf.extend(rows)
            if rows:
                self._live_cursor = rows[-1].seq
        from_backlog = min(len(self._backlog_buf), max(1, room // 4))
        from_live = min(len(self._live_buf), room - from_backlog)
        from_backlog = min(len(self._backlog_buf), room - from_live)
        batch = [self._backlog_buf.popleft() for _ in range(from_backlog)]
        batch += [self._live_buf.popleft() for _ in range(from_live)]
        topic = topics.events(self.device)
        now, meter = time.monotonic(), self.meter
        for stored in batch:
            self._inflight[link.publish(topic, stored.payload, qos=1)] = (stored.seq, now)
            meter.published(len(stored.payload))
        self.published += len(batch)

    def _handle_ack(self, payload: bytes) -> None:
        try:
            ack = parse_ack(payload, self.verifier, self.device)
            if ack.seq <= self.acked_seq and ack.seq == self.outbox.acked_seq():
                return  # the retained ack we already applied
            pruned = self.outbox.acknowledge(ack.seq, ack.hash)
        except ChainForked as exc:
            self.rejected_acks += 1
            if self.on_fork is None:
                log.warning("uplink: ack rejected: %s", exc)
                return
            log.error("uplink: %s: the outbox is older than what the bank holds; repairing",
                      exc)
            self.on_fork(ack.seq, ack.hash, str(exc))
            self._inflight.clear()
            self._reset_cursors()
            return
        except StaleAck as exc:
            self.stale_acks += 1
            log.info("uplink: stale ack ignored: %s", exc)
            return
        except CocoonError as exc:
            self.rejected_acks += 1
            log.warning("uplink: ack rejected: %s", exc)
            return
        self.acked_seq = ack.seq
        log.debug("uplink: ingest acknowledged up to seq %d (%d pruned)", ack.seq, pruned)
        self._note_ingest_time(ack.ts)

    def _note_ingest_time(self, ts: str) -> None:
        """An ack that moved the watermark was made after the ingest stored the event: its
        signed `ts` is the bank's time now, as trusted as a time hint. Kept (at most once a
        minute) for a station whose clock is not synchronised (agent.station.trusted_time)."""
        now = time.monotonic()
        if now - self._ingest_time_noted < 60:
            return
        try:
            utc = parse_utc_timestamp(ts)
            self.outbox.write("INSERT INTO meta (key, value) VALUES ('ingest_time', ?) ON "
                              "CONFLICT(key) DO UPDATE SET value = excluded.value",
                              [(time_note(utc),)])
        except (ValueError, CocoonError) as exc:
            log.debug("uplink: ingest time not kept: %s", exc)
            return
        self._ingest_time_noted = now

    def close(self) -> None:
        """Write the last PUBACK marks; stop the command worker after the commands already
        queued (bounded waits)."""
        self._flush_pubacks(force=True)
        self._marks.put(None)
        self._marker.join(timeout=10)
        if self._commands is not None:
            self._commands.put(None)
            self._worker.join(timeout=10)

    def _command_worker(self) -> None:
        serve_commands(self._commands, self.on_command)


def serve_commands(commands: queue.Queue, handle) -> None:
    """Hand each queued (payload, ack) to `handle` until None comes, then acknowledge it to the
    broker: `handle` returns once the command's acceptance or refusal is a durable event. When
    it could not be recorded (a full disk), the command is not acknowledged, and the broker
    sends it again on the next connection."""
    while True:
        item = commands.get()
        if item is None:
            return
        payload, ack = item
        try:
            handle(payload)
        except CocoonError as exc:
            log.error("command handling failed, not acknowledged to the broker: %s", exc)
            continue
        ack()

"""The durable outbox: every event the agent records, from the moment it is sealed until the
bank's ingest acknowledges that it has stored it.

Why it is built this way:
- `append()` returns only after the event is on disk (WAL, `synchronous=FULL`). Appenders that
  arrive while a commit is running are committed together in the next one (group commit), each
  caller blocking until its own commit is durable. Telemetry waits up to `telemetry_batch_ms`
  for company before committing, so a burst of readings shares one fsync; money and alert events
  never wait and take any waiting telemetry with them.
- The sequence number and the chain link are assigned inside the committing transaction
  (`BEGIN IMMEDIATE`), so several processes (the running agent and `cocoon-agent emit`) get
  distinct, gap-free numbers, and a rolled-back transaction consumes no number.
- Rows move pending -> sent (broker PUBACK) -> acknowledged (signed ack from the ingest); only
  acknowledged rows are pruned. The chain head lives in `meta`, so pruning never loses it.
- Capacity is counted in bytes. Money and alert events are never evicted: a money event that
  does not fit fails with OutboxFull and raises an `outbox.full` alert (alerts may use a small
  reserve above the capacity). Telemetry is evicted oldest first, and every eviction is declared
  by a signed `seq.skipped` event in the same transaction.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.contract import events
from agent.contract.durable import fsync_dir, write_private
from agent.contract.events import Draft
from agent.contract.signing import Signer
from agent.errors import (
    ChainForked,
    CocoonError,
    OutboxError,
    OutboxFull,
    OutboxUncertain,
    StaleAck,
)
from agent.spine.migrations import migrate
from agent.spine.outbox_schema import MIGRATIONS

log = logging.getLogger(__name__)

PENDING, SENT = 0, 1
STATE_NAMES = {PENDING: "pending", SENT: "sent"}


class _Request:
    """One append waiting for its commit. The caller sleeps on a bare lock that the committer
    releases: a threading.Event would cost a Condition and a second lock per event."""

    __slots__ = ("draft", "within", "seq", "error", "event", "sealed", "_done")

    def __init__(self, draft: Draft, within: Callable | None,
                 event: threading.Event | None = None):
        self.draft, self.within, self.event = draft, within, event
        self.seq: int | None = None
        self.error: BaseException | None = None
        self.sealed: tuple | None = None  # (seq, prev, payload, hash) sealed ahead of time
        self._done = threading.Lock()
        self._done.acquire()

    def wait(self) -> None:
        self._done.acquire()

    def finish(self) -> None:
        if self.event is not None:
            self.event.set()
        self._done.release()


@dataclass(frozen=True)
class Stored:
    """One stored event as the uplink sees it."""

    seq: int
    priority: str
    payload: bytes


@dataclass(frozen=True)
class QueueStats:
    counts: dict[str, int]
    oldest_pending_age_s: float | None
    head_seq: int
    acked_seq: int
    used_bytes: int
    capacity_bytes: int
    evicted_total: int = 0
    by_priority: dict[str, int] = field(default_factory=dict)


def connect_sqlite(path: Path) -> sqlite3.Connection:
    """The production connection: autocommit mode, explicit transactions, durable commits."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    return conn


class Outbox:
    def __init__(
        self,
        path: str | Path,
        *,
        device: str,
        signer: Signer,
        capacity_bytes: int = 512 * 1024 * 1024,
        alert_reserve_bytes: int = 1024 * 1024,
        telemetry_batch_ms: int = 200,
        connect: Callable[[Path], object] = connect_sqlite,
        high_water: Path | None = None,
    ):
        self.path = Path(path)
        #: The high-water file (see read_high_water); a rebuild's is the outbox's it replaces.
        self.high_water = Path(high_water) if high_water else high_water_path(self.path)
        self.device = device
        self.signer = signer
        self.capacity_bytes = capacity_bytes
        self.alert_reserve_bytes = alert_reserve_bytes
        self.telemetry_batch_s = telemetry_batch_ms / 1000
        self._connect = connect
        self._queue: list[_Request] = []
        self._cond = threading.Condition()
        self._committer: threading.Thread | None = None
        self._syncer: threading.Thread | None = None
        self._syncs: queue.SimpleQueue = queue.SimpleQueue()  # batches whose COMMIT is due
        self._predicted: tuple[int, str] | None = None  # the head once that COMMIT is done
        self._closed = False
        self._read_lock = threading.Lock()
        # One writer at a time inside this process, handed over by a lock: SQLite's own busy
        # handler would make a waiting writer sleep in growing steps (1, 2, 5 ... 100 ms),
        # which stalls the uplink behind every commit. Other processes still meet busy_timeout.
        self._write_lock = threading.Lock()
        self._full_alerted = False
        self._reserved = read_high_water(self.high_water)
        #: Space kept for the alert, the acks and the prune on a full disk (see disk_full).
        self._disk_full = False
        self._reserve_checked = 0.0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        room_to_open(self.path)
        created = make_private(self.path)
        self._conn = self._open()
        self._reader = self._open()
        # Row states (sent, acknowledged) need no fsync of their own: losing one only means an
        # event is sent again, which the ingest absorbs, and the next durable append syncs them
        # anyway. Keeping them off the appenders' fsync path is what lets a backlog drain at
        # link speed.
        self._state = self._open(synchronous="NORMAL")
        if created:
            fsync_dir(self.path.parent)  # SQLite does not sync the new file's directory entry
        self._disk_full = not self._keep_reserve()
        self._reserve_checked = time.monotonic()

    # -- opening -------------------------------------------------------------------------

    def _open(self, synchronous: str = "FULL"):
        conn = self._connect(self.path)
        conn.execute("PRAGMA busy_timeout=30000")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(f"{self.path}: cannot switch the outbox to WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA cache_size=-1024")  # 1 MiB per connection: a Pi has little RAM
        if isinstance(conn, sqlite3.Connection):
            migrate(conn, MIGRATIONS)
        return conn

    def close(self) -> None:
        """Commit what is queued, stop the committer, close the connections."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._committer is not None and self._committer is not threading.current_thread():
            self._committer.join(timeout=60)
        for conn in (self._conn, self._reader, self._state):
            try:
                conn.close()
            except Exception:
                log.debug("outbox close failed", exc_info=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- appending -----------------------------------------------------------------------

    def append(self, draft: Draft, *, within: Callable | None = None) -> int:
        """Seal, sign and durably store one event; return its sequence number.

        `within(execute, seq)` runs inside the event's transaction before it is sealed, so that a
        side record (such as a seen command id) is stored if and only if the event is. If it
        returns a dict, its members are added to the body (a number drawn in the transaction,
        such as a voucher). If it raises a CocoonError, nothing of this request is stored and the
        error is re-raised.
        """
        if draft.priority != "alert" and not self._room_for(draft):
            self._on_disk_full([], "the reserve beside the outbox is not whole")
            raise OutboxFull(self._disk_full_message())
        req = self._enqueue(_Request(draft, within))
        req.wait()
        if req.error is not None:
            raise req.error
        # One journal line per recorded event, once durable: money and alerts at INFO,
        # telemetry at DEBUG. With that level off this costs one (cached) level check.
        level = logging.DEBUG if draft.priority == "telemetry" else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "event recorded", extra={"fields": {
                "seq": req.seq, "type": draft.type, "priority": draft.priority}})
        return req.seq

    def submit(self, draft: Draft) -> threading.Event:
        """Queue a telemetry event without waiting for it; return an event set once committed.

        For producers of frequent readings (tag reads, weights): `append()` would hold such a
        producer for up to `telemetry_batch_ms` per reading. The reading is durable once the
        returned event is set; until then a crash loses it, which telemetry may afford.
        Money and alert events must use `append()`.
        """
        if draft.priority != "telemetry":
            raise OutboxError("only telemetry may be submitted without waiting; use append()")
        return self._enqueue(_Request(draft, None, threading.Event())).event

    def _enqueue(self, req: _Request) -> _Request:
        with self._cond:
            if self._closed:
                raise OutboxError(f"{self.path}: the outbox is closed")
            self._queue.append(req)
            self._start_committer()
            self._cond.notify()
        return req

    # Group commit by one committer thread: callers queue a request and sleep on their own
    # lock; the committer takes everything queued, writes it in one transaction and hands the
    # COMMIT (the fsync) to the syncer thread, which wakes exactly those callers once it is
    # durable. A leader elected among the callers would instead wake every waiting thread
    # after each commit, and the woken crowd fights the committing thread for the GIL.
    #
    # While the syncer waits for the disk, the committer already seals the next group against
    # the chain head that the pending COMMIT will leave (`_predicted`): sealing (JSON and a
    # signature per event) is most of a commit's CPU, and the fsync most of its wall time, so
    # the two overlap. Numbers and links are still decided inside the transaction: a sealed
    # event whose number and `prev` do not follow the head read there (another process
    # appended, or the pending COMMIT failed) is sealed again. The next transaction begins only
    # after the previous COMMIT is done (the syncer holds the write lock until then), and a
    # caller is woken only after its own COMMIT returned.

    def _start_committer(self) -> None:
        if self._committer is None:
            self._syncer = threading.Thread(target=self._sync_loop, name="outbox-sync",
                                            daemon=True)
            self._syncer.start()
            self._committer = threading.Thread(target=self._commit_loop, name="outbox-commit",
                                               daemon=True)
            self._committer.start()

    def _commit_loop(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closed:
                        self._cond.wait()
                    if not self._queue:
                        return  # closed and drained
                    if self.telemetry_batch_s > 0 and not self._closed and all(
                            r.draft.priority == "telemetry" for r in self._queue):
                        # Only telemetry: wait up to the window for company (or a money event).
                        deadline = time.monotonic() + self.telemetry_batch_s
                        while not self._closed and all(
                                r.draft.priority == "telemetry" for r in self._queue):
                            left = deadline - time.monotonic()
                            if left <= 0:
                                break
                            self._cond.wait(left)
                    batch, self._queue = self._queue, []
                try:
                    self._commit(batch)
                except Exception:  # the batch's callers have their error already
                    log.debug("outbox commit failed", exc_info=True)
        finally:
            self._syncs.put(None)
            if self._syncer is not None:
                self._syncer.join(timeout=60)

    def _meta(self, conn) -> dict[str, str]:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())

    def _commit(self, batch: list[_Request]) -> None:
        """Write `batch` in one transaction and hand its COMMIT to the syncer; on any failure
        before that, fail and wake its callers here."""
        handed = locked = False
        try:
            self._preseal(batch)
            self._write_lock.acquire()  # waits for the pending COMMIT; the syncer releases it
            locked = True
            with self._cond:  # callers that came while waiting share this commit too
                batch.extend(self._queue)
                self._queue.clear()
            if self._write_batch(batch):
                self._syncs.put(batch)
                handed = True
        except BaseException as exc:  # never leave a caller waiting forever
            self._fail_all(batch, exc)
            raise
        finally:
            if not handed:
                if locked:
                    self._write_lock.release()
                for r in batch:
                    r.finish()

    def _sync_loop(self) -> None:
        while True:
            batch = self._syncs.get()
            if batch is None:
                return
            try:
                self._conn.execute("COMMIT")
            except BaseException as exc:  # every caller of the batch must see the failure
                try:
                    self._conn.execute("ROLLBACK")
                except Exception:
                    log.debug("rollback failed", exc_info=True)
                self._predicted = None
                self._fail_all(batch, exc, uncertain=True)
            finally:
                self._write_lock.release()
                for r in batch:
                    r.finish()

    def _preseal(self, batch: list[_Request]) -> None:
        """Seal the requests that can be sealed ahead, in order, after the predicted head."""
        predicted = self._predicted
        if predicted is None:
            return
        seq, prev = predicted
        for req in batch:
            if req.within is not None:
                return  # its body is completed in the transaction: the chain waits for it
            try:
                _, payload = events.seal_encoded(
                    req.draft, device=self.device, seq=seq + 1, prev=prev, signer=self.signer
                )
            except Exception:
                return  # sealed again in the transaction, which reports the error
            digest = events.sha256_hex(payload)
            req.sealed = (seq + 1, prev, payload, digest)
            seq, prev = seq + 1, digest

    def _write_batch(self, batch: list[_Request]) -> bool:
        """Everything of the transaction but its COMMIT; False if it failed (callers told)."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:  # any driver's error: every caller must see the failure
            self._fail_all(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return False
        try:
            meta = self._meta(conn)
            state = _Head(int(meta["head_seq"]), meta["head_hash"], int(meta["used_bytes"]))
            evicted: list[tuple[int, str]] = []
            rows: list[tuple] = []
            for req in batch:
                self._append_one(conn, req, state, evicted, rows)
            self._insert(conn, rows)
            if evicted:
                self._declare_evictions(conn, state, evicted)
            if state.seq > self._reserved:
                self._reserve(state.seq)
            conn.execute(_UPDATE_HEAD, (str(state.seq), state.hash, str(state.used),
                                        str(int(meta.get("evicted_total", 0)) + len(evicted))))
        except BaseException as exc:
            try:
                conn.execute("ROLLBACK")
            except Exception:
                log.debug("rollback failed", exc_info=True)
            self._fail_all(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return False
        self._predicted = (state.seq, state.hash)
        return True

    # -- a full disk ---------------------------------------------------------------------
    #
    # On a full disk SQLite cannot even delete (a WAL frame is a write), so a device that
    # cannot write cannot send and prune its way out either. The outbox keeps a reserve file
    # (RESERVE_BYTES) beside the database; the first write that meets a full disk gives it
    # back, and with that room the outbox.full alert, the acks and the prunes are written.
    # Money and telemetry are refused with OutboxFull until there is room for the reserve again.

    def _keep_reserve(self) -> bool:
        """Make the reserve's missing chunks while the disk has room for each and as much
        again; True when the whole reserve is in place (the disk is no longer full)."""
        whole = True
        for chunk in reserve_chunks(self.path):
            if chunk.exists():
                continue
            try:
                st = os.statvfs(self.path.parent)
                if st.f_bavail * st.f_frsize < 2 * RESERVE_CHUNK:
                    whole = False
                    break
                fd = os.open(chunk, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.posix_fallocate(fd, 0, RESERVE_CHUNK)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except FileExistsError:
                continue
            except OSError as exc:
                chunk.unlink(missing_ok=True)
                if disk_full(exc):
                    whole = False
                else:   # not a matter of room: no reserve here, and no refusal for it
                    log.warning("no reserve beside the outbox %s: %s", self.path, exc)
                break
        if whole and self._disk_full:
            log.warning("outbox %s: the disk has room again", self.path)
            self._disk_full, self._full_alerted = False, False
            try:   # the next full disk is a new one, with its own alert
                with self._write_lock:
                    self._state.execute("UPDATE meta SET value = '' WHERE key = 'disk_full'")
            except sqlite3.Error:
                log.debug("could not clear the full-disk mark", exc_info=True)
        return whole

    def _room_for(self, draft: Draft) -> bool:
        """Whether the disk has room for a money or telemetry event: the reserve (whose room
        is for the alert, the acks and the prunes) is whole, or can be made whole again.
        Looked at once a second, or at every event while the disk is full: another process
        of the device may have given chunks back meanwhile."""
        now = time.monotonic()
        if self._disk_full or now >= self._reserve_checked + 1.0:
            self._reserve_checked = now
            if not self._keep_reserve():
                self._disk_full = True
        return not self._disk_full

    def _used_bytes(self) -> int | None:
        """The outbox's own count, for the alert; None when even a read fails."""
        try:
            return self.stats().used_bytes
        except Exception:
            return None

    def _give_back_reserve(self) -> bool:
        """Delete one chunk of the reserve; True when there was one to give."""
        return give_back_chunk(self.path)

    def _disk_full_message(self) -> str:
        return (f"the disk is full ({self.path.parent}): the event was not recorded. Free "
                "space there (old logs, files that do not belong), and keep the link to the "
                "bank up: what it acknowledges is pruned. Nothing recorded is lost.")

    def _on_disk_full(self, batch, exc) -> None:
        first = not self._disk_full
        self._disk_full = True
        if first:
            log.error("outbox %s: %s (%s)", self.path, self._disk_full_message(), exc)
        for r in batch:
            r.error = OutboxFull(self._disk_full_message())
        if self._full_alerted:
            return
        self._full_alerted = True
        self._give_back_reserve()
        alert = _Request(Draft("outbox.full", "alert", {
            "used_bytes": self._used_bytes(), "capacity_bytes": self.capacity_bytes,
            "message": f"disk full: money events are refused until there is room ({exc})"[:300],
        }), _once_per_full_disk, threading.Event())
        try:    # recorded by the committer, in the room the reserve gave back
            self._enqueue(alert)
        except OutboxError:
            log.error("the outbox is closed: the outbox.full alert is not recorded")

    def _with_room(self, work: Callable[[], object], *, essential: bool = True) -> object:
        """Run `work` (a transaction). On a full disk an essential one (an ack and its prune)
        is run again after the WAL is checkpointed and, as long as that is not enough, after
        each chunk of the reserve is given back; any other (the rows' sent marks, which only
        save a resend) is refused with OutboxFull and spends nothing of the reserve."""
        if self._disk_full and not essential and not self._keep_reserve():
            raise OutboxFull(self._disk_full_message())
        checkpointed = False
        while True:
            try:
                return work()
            except Exception as exc:
                if not disk_full(exc):
                    raise
                if not self._disk_full:
                    log.error("outbox %s: %s (%s)", self.path, self._disk_full_message(), exc)
                self._disk_full = True
                if not essential:
                    raise OutboxFull(self._disk_full_message()) from exc
                if not checkpointed:
                    checkpointed = True
                    if self._checkpoint():
                        continue
                if not self._give_back_reserve():
                    raise OutboxFull(self._disk_full_message()) from exc
                log.warning("outbox %s: disk full; a chunk of the reserve given back for the "
                            "link", self.path)

    def _checkpoint(self) -> bool:
        """Copy the WAL into the database and truncate it: on a full disk, the WAL's own
        pages are the room a prune needs (SQLite would otherwise let it grow to 4 MiB before
        reusing it). True when the WAL was emptied."""
        try:
            with self._write_lock:
                busy, _, _ = self._state.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return busy == 0
        except Exception:
            log.debug("checkpoint failed", exc_info=True)
            return False

    def _reserve(self, seq: int) -> None:
        """Before a seq above the reserved block is committed: reserve the next block in the
        high-water file, durably (one fsync per HIGH_WATER_BLOCK events). Under the write lock
        of the database, so that writers in other processes take turns; each reads the file
        again, in case another went further."""
        reserved = max(read_high_water(self.high_water), seq) + HIGH_WATER_BLOCK
        write_private(self.high_water, f"{reserved}\n".encode())
        self._reserved = reserved

    def _fail_all(self, batch, exc, *, uncertain: bool = False) -> None:
        """Fail every caller of `batch`. Before the COMMIT nothing was recorded; a COMMIT
        that failed (`uncertain`: the disk failed while making it durable) may have
        recorded it, which only a look at the outbox can tell."""
        if disk_full(exc):
            self._on_disk_full(batch, exc)
            return
        log.error("outbox commit failed: %s", exc)
        for req in batch:
            req.seq = None
            if isinstance(exc, CocoonError):
                req.error = exc
            elif uncertain:
                req.error = OutboxUncertain(
                    f"{self.path}: the event may or may not have been recorded ({exc}): look "
                    "for it in the outbox before recording it again")
            else:
                req.error = OutboxError(
                    f"{self.path}: could not store the event ({exc}); it was not recorded")

    def _append_one(self, conn, req: _Request, state: _Head, evicted: list,
                    rows: list | None = None) -> None:
        """Seal one event and store it in the open transaction.

        The common case (no `within`, room to spare) only adds the row to `rows`, which
        `_insert` writes for the whole group in one statement: each statement is a trip
        through the sqlite3 module that lets other threads take the GIL, and the committer
        then waits to get it back. Everything else is written at once, inside a savepoint, after
        the rows queued so far.
        """
        if rows is not None and req.within is None:
            seq = state.seq + 1
            sealed = req.sealed
            if sealed is not None and sealed[0] == seq and sealed[1] == state.hash:
                _, _, payload, digest = sealed
            else:
                try:
                    _, payload = events.seal_encoded(
                        req.draft, device=self.device, seq=seq, prev=state.hash,
                        signer=self.signer
                    )
                except CocoonError as exc:
                    req.error = exc
                    return
                digest = events.sha256_hex(payload)
            size = len(payload)
            if self._fits(req.draft.priority, size, state):
                rows.append((seq, req.draft.priority, req.draft.type, PENDING, digest, payload,
                             size, time.time()))
                state.seq, state.hash, state.used = seq, digest, state.used + size
                req.seq = seq
                return
        if rows:
            self._insert(conn, rows)
        conn.execute("SAVEPOINT one")
        try:
            draft = req.draft
            seq = state.seq + 1
            if req.within is not None:
                extra = req.within(conn.execute, seq)
                if extra:  # e.g. a voucher number drawn in this very transaction
                    draft = Draft(draft.type, draft.priority, {**draft.body, **extra})
            _, payload = events.seal_encoded(
                draft, device=self.device, seq=seq, prev=state.hash, signer=self.signer
            )
            self._make_room(conn, req.draft.priority, len(payload), state, evicted)
            digest = events.sha256_hex(payload)
            conn.execute(
                "INSERT INTO events (seq, priority, type, state, hash, payload, size, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, req.draft.priority, req.draft.type, PENDING,
                 digest, payload, len(payload), time.time()),
            )
            conn.execute("RELEASE one")
        except CocoonError as exc:
            conn.execute("ROLLBACK TO one")
            conn.execute("RELEASE one")
            req.error = exc
            if isinstance(exc, OutboxFull):
                self._raise_full_alert(conn, state, evicted)
            return
        state.seq, state.hash = seq, digest
        state.used += len(payload)
        req.seq = seq

    @staticmethod
    def _insert(conn, rows: list[tuple]) -> None:
        """Write the queued rows, up to _INSERT_CHUNK per statement, and empty the list."""
        for i in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows[i:i + _INSERT_CHUNK]
            conn.execute(_insert_sql(len(chunk)), [v for row in chunk for v in row])
        rows.clear()

    def _limit(self, priority: str) -> int:
        return self.capacity_bytes + (self.alert_reserve_bytes if priority == "alert" else 0)

    def _fits(self, priority: str, size: int, state: _Head) -> bool:
        if state.used + size > self._limit(priority):
            return False
        if state.used + size < 0.9 * self.capacity_bytes:
            self._full_alerted = False
        return True

    def _make_room(self, conn, priority: str, size: int, state: _Head, evicted: list) -> None:
        if self._fits(priority, size, state):
            return
        need = state.used + size - self._limit(priority)
        rows = conn.execute(
            "SELECT seq, hash, size FROM events WHERE priority = 'telemetry' ORDER BY seq"
        ).fetchall()
        freed, victims = 0, []
        for seq, h, sz in rows:
            if freed >= need:
                break
            victims.append((seq, h))
            freed += sz
        if freed < need:
            raise OutboxFull(
                f"outbox full: {state.used} of {self.capacity_bytes} bytes hold events not yet "
                f"acknowledged by the bank; new {priority} events cannot be recorded until the "
                "link to the bank returns and the backlog drains"
            )
        conn.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s, _ in victims])
        state.used -= freed
        evicted.extend(victims)
        log.warning("outbox full: evicted %d telemetry events (%d bytes)", len(victims), freed)

    def _raise_full_alert(self, conn, state: _Head, evicted: list) -> None:
        if self._full_alerted:
            return
        self._full_alerted = True
        alert = _Request(Draft("outbox.full", "alert", {
            "used_bytes": state.used,
            "capacity_bytes": self.capacity_bytes,
            "message": "outbox full: money events are refused until the backlog drains",
        }), None)
        self._append_one(conn, alert, state, evicted)
        if alert.error:
            log.error("could not record the outbox.full alert: %s", alert.error)

    def _declare_evictions(self, conn, state: _Head, evicted: list[tuple[int, str]]) -> None:
        evicted.sort()
        ranges: list[dict] = []
        for seq, h in evicted:
            if ranges and ranges[-1]["to"] == seq - 1:
                ranges[-1]["to"], ranges[-1]["last_hash"] = seq, h
            else:
                ranges.append({"from": seq, "to": seq, "last_hash": h})
        decl = _Request(Draft(events.SEQ_SKIPPED, "alert", {
            "reason": "telemetry-evicted", "ranges": ranges,
        }), None)
        self._append_one(conn, decl, state, [])
        if decl.error:
            raise decl.error  # never evict without declaring: roll the whole batch back

    # -- the uplink's side -------------------------------------------------------------------

    def pending(self, limit: int, *, after: int = 0, upto: int | None = None) -> list[Stored]:
        """Pending events with after < seq <= upto, oldest first."""
        sql = "SELECT seq, priority, payload FROM events WHERE state = 0 AND seq > ?"
        args: list = [after]
        if upto is not None:
            sql += " AND seq <= ?"
            args.append(upto)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        with self._read_lock:
            rows = self._reader.execute(sql, args).fetchall()
        return [Stored(s, p, bytes(b)) for s, p, b in rows]

    def mark_sent(self, seqs: list[int]) -> None:
        if not seqs:
            return
        now = time.time()
        # PUBACKs come back mostly in order: one statement per run of consecutive numbers.
        runs: list[list[int]] = []
        for seq in sorted(seqs):
            if runs and seq == runs[-1][1] + 1:
                runs[-1][1] = seq
            else:
                runs.append([seq, seq])
        self._write(
            "UPDATE events SET state = 1, sent_at = ?, attempts = attempts + 1"
            " WHERE seq BETWEEN ? AND ? AND state = 0",
            [(now, first, last) for first, last in runs], essential=False,
        )

    def requeue_sent(self, older_than_s: float | None = None) -> int:
        """Make sent-but-unacknowledged events pending again (after a reconnect or timeout)."""
        if older_than_s is None:
            return self._write("UPDATE events SET state = 0 WHERE state = 1", essential=False)
        cutoff = time.time() - older_than_s
        return self._write(
            "UPDATE events SET state = 0 WHERE state = 1 AND sent_at < ?", [(cutoff,)],
            essential=False,
        )

    def event_hash(self, seq: int) -> str | None:
        with self._read_lock:
            row = self._reader.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
        return row[0] if row else None

    def head_seq(self) -> int:
        """The last sequence number given out (cheap: one row of meta)."""
        with self._read_lock:
            return int(self._reader.execute(
                "SELECT value FROM meta WHERE key = 'head_seq'").fetchone()[0])

    def acked_seq(self) -> int:
        with self._read_lock:
            return int(self._meta(self._reader)["acked_seq"])

    def acknowledge(self, seq: int, hash_hex: str) -> int:
        """Record the ingest's cumulative ack and prune everything up to `seq`.

        The caller has verified the ack's signature. Returns how many rows were pruned. Raises
        OutboxError when the ack does not match what this outbox holds (a forged or replayed
        ack must never prune anything).
        """
        if not self._disk_full:
            try:
                return self._with_room(lambda: self._acknowledge(seq, hash_hex))
            except OutboxFull:
                pass
        # On a full disk the prune goes in small steps, each checkpointed: every step's WAL
        # frames fit in one chunk of the reserve, and the checkpoint hands them back.
        pruned, step = 0, None
        while step != 0:
            step = self._with_room(
                lambda: self._acknowledge(seq, hash_hex, at_most=PRUNE_STEP))
            pruned += step
            self._checkpoint()
        self._keep_reserve()
        return pruned

    def _acknowledge(self, seq: int, hash_hex: str, at_most: int | None = None) -> int:
        """One transaction of the prune: all of it, or (`at_most`) its next rows, the ack
        point moving with them (every row above it is still there)."""
        with self._write_lock:
            conn = self._state
            conn.execute("BEGIN IMMEDIATE")
            try:
                meta = self._meta(conn)
                acked, head = int(meta["acked_seq"]), int(meta["head_seq"])
                if seq < acked:
                    raise StaleAck(f"ack for seq {seq} is below the watermark {acked}")
                if seq > head:
                    raise ChainForked(f"ack for seq {seq} is beyond the last event {head}")
                row = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
                expected = row[0] if row else (meta["acked_hash"] if seq == acked else None)
                if expected is not None and expected != hash_hex:
                    raise ChainForked(f"ack for seq {seq} names a hash this device never sent")
                if expected != hash_hex:
                    raise OutboxError(f"ack for seq {seq} names a hash this device never sent")
                upto = seq
                if at_most is not None:
                    last = conn.execute(
                        "SELECT max(seq) FROM (SELECT seq FROM events WHERE seq <= ? "
                        "ORDER BY seq LIMIT ?)", (seq, at_most)).fetchone()[0]
                    upto = seq if last is None else last
                freed = conn.execute(
                    "SELECT count(*), coalesce(sum(size), 0) FROM events WHERE seq <= ?", (upto,)
                ).fetchone()
                upto_hash = hash_hex if upto == seq else conn.execute(
                    "SELECT hash FROM events WHERE seq = ?", (upto,)).fetchone()[0]
                conn.execute("DELETE FROM events WHERE seq <= ?", (upto,))
                conn.executemany("UPDATE meta SET value = ? WHERE key = ?", [
                    (str(int(meta["used_bytes"]) - freed[1]), "used_bytes"),
                    (str(upto), "acked_seq"), (upto_hash, "acked_hash")])
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        return freed[0]

    def resume_after(self, seq: int, hash_hex: str, reason: str) -> int:
        """Repair a fork (ChainForked): the bank holds the device's chain up to `seq` (hash
        `hash_hex`), and this outbox is an older copy whose later seqs the bank may hold
        with other content. In one transaction: a signed `chain.resumed` after the bank's
        (seq, hash), above every seq this device may have used, and every unacknowledged
        event signed again after it, each naming the original (`original`: seq and hash;
        a sale keeps its voucher, so the bank pays it once). Returns the chain.resumed seq."""
        if self.signer is None:
            raise OutboxError("this outbox cannot sign (the link's own process): the agent "
                              "repairs the fork")
        with self._write_lock:
            meta = self._meta(self._state)
            head, acked = int(meta["head_seq"]), int(meta["acked_seq"])
            old = self._state.execute(
                "SELECT seq, type, priority, hash, payload FROM events WHERE seq > ? "
                "ORDER BY seq", (acked,)).fetchall()
            top = max(head, seq, read_high_water(self.high_water))
            resumed_at = top + 1
            self._reserve(resumed_at + len(old))
            drafts = [Draft(events.CHAIN_RESUMED, "alert", {
                "after_seq": seq, "after_hash": hash_hex,
                "lost": [{"from": seq + 1, "to": top}] if top > seq else [],
                "reason": reason[:300]})]
            for old_seq, type_, priority, digest, payload in old:
                body = json.loads(payload)["body"]
                drafts.append(Draft(type_, priority, {
                    **body, "original": {"seq": old_seq, "hash": digest}}))
            rows, prev, now = [], hash_hex, time.time()
            for n, draft in enumerate(drafts):
                _, sealed = events.seal_encoded(draft, device=self.device,
                                                seq=resumed_at + n, prev=prev,
                                                signer=self.signer)
                prev = events.sha256_hex(sealed)
                rows.append((resumed_at + n, draft.priority, draft.type, PENDING, prev, sealed,
                             len(sealed), now))
            conn = self._state
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM events WHERE seq > ?", (acked,))
                conn.execute("DELETE FROM events WHERE seq <= ?", (acked,))
                conn.executemany(_insert_sql(1), rows)
                conn.executemany("UPDATE meta SET value = ? WHERE key = ?", [
                    (str(resumed_at + len(rows) - 1), "head_seq"), (prev, "head_hash"),
                    (str(seq), "acked_seq"), (hash_hex, "acked_hash"),
                    (str(sum(r[6] for r in rows)), "used_bytes")])
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            self._predicted = None
        log.error("outbox %s: the bank holds this device's chain up to seq %d, which this "
                  "outbox does not (a restored copy?); resumed at seq %d, %d event(s) signed "
                  "again", self.path, seq, resumed_at, len(old))
        return resumed_at

    def read(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        """Run a read-only query on the outbox's reader connection (for station records)."""
        with self._read_lock:
            return self._reader.execute(sql, args).fetchall()

    def write(self, sql: str, rows: list | None = None) -> int:
        """Run one statement (or one per row) in its own transaction; return rows changed."""
        return self._write(sql, rows)

    def write_all(self, steps: list[tuple[str, list | None]]) -> int:
        """Run several statements (each with its rows, or None) in one transaction."""
        return self._write(steps)

    def _write(self, sql: str | list, rows: list | None = None, *,
               essential: bool = True) -> int:
        steps = sql if isinstance(sql, list) else [(sql, rows)]

        def work() -> int:
            with self._write_lock:
                conn = self._state
                conn.execute("BEGIN IMMEDIATE")
                try:
                    before = conn.execute("SELECT total_changes()").fetchone()[0]
                    for statement, args in steps:
                        if args is None:
                            conn.execute(statement)
                        else:
                            conn.executemany(statement, args)
                    changed = conn.execute("SELECT total_changes()").fetchone()[0] - before
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
            return changed

        changed = self._with_room(work, essential=essential)
        if self._disk_full:
            self._keep_reserve()
        return changed

    # -- inspection ------------------------------------------------------------------------

    def stats(self) -> QueueStats:
        with self._read_lock:
            conn = self._reader
            meta = self._meta(conn)
            counts = {name: 0 for name in STATE_NAMES.values()}
            for st, n in conn.execute("SELECT state, count(*) FROM events GROUP BY state"):
                counts[STATE_NAMES.get(st, str(st))] = n
            by_priority = dict(conn.execute(
                "SELECT priority, count(*) FROM events GROUP BY priority").fetchall())
            oldest = conn.execute(
                "SELECT min(created) FROM events WHERE state IN (0, 1)").fetchone()[0]
        counts["acknowledged"] = int(meta["acked_seq"])
        return QueueStats(
            counts=counts,
            oldest_pending_age_s=None if oldest is None else max(0.0, time.time() - oldest),
            head_seq=int(meta["head_seq"]),
            acked_seq=int(meta["acked_seq"]),
            used_bytes=int(meta["used_bytes"]),
            capacity_bytes=self.capacity_bytes,
            evicted_total=int(meta.get("evicted_total", 0)),
            by_priority=by_priority,
        )


_UPDATE_HEAD = (
    "UPDATE meta SET value = CASE key WHEN 'head_seq' THEN ?1 WHEN 'head_hash' THEN ?2"
    " WHEN 'used_bytes' THEN ?3 ELSE ?4 END"
    " WHERE key IN ('head_seq', 'head_hash', 'used_bytes', 'evicted_total')"
)
SQLITE_FULL = 13

#: Room kept beside the outbox for opening it, the alert, the acks and the prunes on a full
#: disk, in chunks given back one at a time as they are needed.
RESERVE_CHUNK = 256 * 1024
RESERVE_CHUNKS = 4


def reserve_chunks(path: Path) -> list[Path]:
    return [Path(f"{path}.reserve{i}") for i in range(RESERVE_CHUNKS)]


def give_back_chunk(path: Path) -> bool:
    """Delete the last chunk of the reserve beside the outbox at `path`; True if there was
    one."""
    for chunk in reversed(reserve_chunks(path)):
        try:
            chunk.unlink()
        except FileNotFoundError:
            continue
        return True
    return False


def room_to_open(path: Path) -> None:
    """On a disk too full to open the outbox (SQLite must create its -wal and -shm files),
    give a chunk of the reserve back first: a device that cannot open its outbox cannot send
    and prune its way out."""
    try:
        st = os.statvfs(Path(path).parent)
        if st.f_bavail * st.f_frsize < RESERVE_CHUNK // 2 and give_back_chunk(Path(path)):
            log.warning("the disk is full: gave back a chunk of the reserve beside %s to "
                        "open it", path)
    except OSError:
        pass


def disk_full(exc: BaseException) -> bool:
    """SQLite's "database or disk is full", or the system's ENOSPC."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    if getattr(exc, "result", None) == SQLITE_FULL or type(exc).__name__ == "FullError":
        return True      # apsw's, as the fault suite runs the outbox
    return isinstance(exc, sqlite3.Error) and (
        getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL"
        or "database or disk is full" in str(exc))


class _AlreadyAlerted(CocoonError):
    """Another process of this device has raised the outbox.full alert of this full disk."""


def _once_per_full_disk(execute, seq: int) -> None:
    """`within` of the outbox.full alert: one per full disk, whichever process meets it."""
    row = execute("SELECT value FROM meta WHERE key = 'disk_full'").fetchone()
    if row and row[0]:
        raise _AlreadyAlerted(f"outbox.full raised already (seq {row[0]})")
    execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('disk_full', ?)", (str(seq),))


def _rollback(conn) -> None:
    """Roll back what is open. SQLite may have rolled back itself (a full disk does), and
    "cannot rollback - no transaction is active" must not hide the error that caused it."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except Exception:   # any driver's: sqlite3's, or apsw's in the fault suite
            log.debug("rollback failed", exc_info=True)


#: Rows pruned per transaction on a full disk.
PRUNE_STEP = 32

#: Sequence numbers reserved at a time in the high-water file.
HIGH_WATER_BLOCK = 1024


def high_water_path(path: Path) -> Path:
    return Path(f"{path}.hwm")


def read_high_water(hwm: Path) -> int:
    """The seq that no event of the outbox has gone beyond, from its high-water file `hwm`
    (reserved in blocks, written before the events): a witness of the chain's head outside
    the database, so that a damaged or replaced database cannot make the device use a seq
    twice. 0 when unknown."""
    try:
        return int(Path(hwm).read_text().split()[0])
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, IndexError) as exc:
        log.warning("%s unreadable (%s): the chain's high-water mark is unknown", hwm, exc)
        return 0


def make_private(path: Path) -> bool:
    """Create `path` empty with mode 0600 if it is missing (True then), and take read access
    from group and others on it and its -wal and -shm: the outbox holds farmer ids and
    amounts. SQLite gives the -wal and -shm files the mode of the database file, so a file
    made here keeps them private too. A file this process may not change keeps its mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return True
    except FileExistsError:
        pass
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
        except FileNotFoundError:
            continue
        except PermissionError:
            log.warning("%s is readable by others and cannot be made private", name)
    return False


_INSERT_CHUNK = 64  # rows per INSERT statement: 512 parameters, well under SQLite's limits


@functools.lru_cache(maxsize=_INSERT_CHUNK)
def _insert_sql(n: int) -> str:
    return ("INSERT INTO events (seq, priority, type, state, hash, payload, size, created)"
            " VALUES " + ",".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * n))


@dataclass
class _Head:
    seq: int
    hash: str
    used: int

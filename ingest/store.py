"""The ingest's store: events kept idempotently on (device, seq), chain links checked once both
ends are here, and the cumulative watermark each ack reports.

Events may arrive in any order (the agent sends live events ahead of its backlog, and resends
after reconnects). An event is stored only if its signature verifies against the device's
registered key, its seq is new (the same seq with other content is a replay or a forgery), and
it agrees with every neighbour already stored: `prev` must equal the hash of seq-1 (or the
`last_hash` of a declared skipped range ending at seq-1), and seq+1's `prev` must equal its hash.
A `chain.resumed` event links to the last event its device vouches for instead, and declares the
seqs it lost: the watermark passes over them, and the next event's `prev` is not checked
against a lost one. Whatever fails is counted, logged and kept out of the events table.

A batch is one transaction under its devices' locks: it reads the stored rows its checks look
at in one query per device, keeps the rows it adds beside them, and writes its new events in
one statement before the watermarks move (a read of the table meanwhile writes them first).
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agent.contract import events, topics
from agent.contract.alerts import alert_change
from agent.contract.envelope import parse_json_object
from agent.contract.errors import EventFormatError, SignatureError
from agent.contract.signing import ES256, P256_N, b64url, b64url_decode, is_high_s, low_s
from ingest.db import connect
from ingest.migrations import migrate
from ingest.purchases import record_day_closed, record_purchase, record_void

log = logging.getLogger(__name__)

ACCEPTED, DUPLICATE, REJECTED, FORKED = "accepted", "duplicate", "rejected", "forked"
PURCHASE_RECORDED, PURCHASE_VOIDED = "purchase.recorded", "purchase.voided"
DAY_CLOSED = "day.closed"
MONEY_CHANNEL = "cocoon_money"      # LISTEN/NOTIFY: {"device", "seq"} of each new money event
AGENT_STARTED = "agent.started"


@dataclass(frozen=True)
class Outcome:
    status: str
    device: str | None
    seq: int | None = None
    type: str | None = None
    priority: str | None = None
    reason: str = ""


MAX_REJECTIONS = 10_000     # rejection records kept (the newest)
ADVANCE_CHUNK = 1000        # events read at once while the watermark moves
PREFETCH_CHUNK = 900        # seqs named in one read of a batch's neighbours (SQLite: 999 max)
COUNTERS = ("accepted", "duplicates", "rejected")


def _text(value: str) -> str:
    """Text PostgreSQL can hold (no NUL, no lone surrogate), for what quotes hostile input."""
    return value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


_ABSENT = "absent"           # _names(): the seq is not stored


def signed_bytes(event: dict) -> bytes:
    """The canonical bytes of an event without its signature: what makes two copies one."""
    return events.encode({k: v for k, v in event.items() if k != "sig"})


def other_form_hash(event: dict) -> str | None:
    """The hash of `event` with its ES256 signature in the other form (s and n - s); None for
    Ed25519, which has one form."""
    if event.get("alg") != ES256:
        return None
    sig = b64url_decode(event["sig"])
    if len(sig) != 64:
        return None
    other = sig[:32] + (P256_N - int.from_bytes(sig[32:], "big")).to_bytes(32, "big")
    return events.event_hash({**event, "sig": b64url(other)})


def open_store(settings) -> IngestStore:
    """The store an [ingest] configuration names: PostgreSQL when [store] url is set, else
    the SQLite file in data_dir."""
    return IngestStore(settings.store_url or settings.store_path)


class IngestStore:
    """One store on SQLite (a file path) or PostgreSQL (a `postgresql://` url); see
    ingest/db.py for what differs between the two, which is nothing the rules here see."""

    def __init__(self, location: str | Path):
        self.db = connect(location)
        self.path: Path | None = self.db.path       # the SQLite file, None on PostgreSQL
        self.where = self.db.where                  # for logs: the path, or the url sans password
        self.conn = self.db.conn
        try:
            migrate(self.db)
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    def answers(self) -> bool:
        """True if the database can be reached now (reconnecting if need be): a batch that
        failed while it answers failed because of what it holds."""
        try:
            self.db.reconnect()
            self.conn = self.db.conn
            self.db.execute("SELECT 1").fetchall()
            return True
        except Exception as exc:
            log.debug("ingest: the store does not answer: %s", exc)
            return False

    def park(self, topic: str, payload: bytes, reason: str, worker: str = "") -> int:
        """Keep a message that cannot be stored, with the reason, out of the way; its id."""
        (row_id,) = self.db.execute(
            "INSERT INTO parked (device, topic, payload, reason, worker, at)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (topics.device_of(topic), _text(topic), payload, _text(reason[:500]), worker,
             time.time())).fetchall()[0]
        return row_id

    @contextmanager
    def acknowledging(self, devices):
        """The committed watermarks of `devices`, read under each device's lock, which stays
        held while the caller publishes them: a worker's ack of a device is on its way to the
        broker before another worker can commit (and then acknowledge) more of that device,
        so the acks a device sees do not go back, however many workers send them."""
        with self.db.transaction(devices):
            yield {d: self.watermark(d) for d in sorted(devices)}

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Rows of a read with `?` placeholders, on either database."""
        return [tuple(r) for r in self.db.execute(sql, args).fetchall()]

    def execute(self, sql: str, args: tuple = ()) -> None:
        self.db.execute(sql, args)

    # -- batches ------------------------------------------------------------------------

    def process_batch(self, messages: list[tuple[str, bytes]], registry) -> tuple[
            list[Outcome], dict[str, tuple[int, str]]]:
        """Store a batch durably in one transaction; return outcomes and moved watermarks."""
        outcomes, touched = [], set()
        named = {d for d in (topics.device_of(t) for t, _ in messages) if d}
        self._counts: dict[str, dict[str, int]] = {}
        with self.db.transaction(named):
            self._revoked = self.revoked()
            self._signing: dict[str, list[tuple[int, int]]] = {}
            self._pending: list[tuple] = []
            parsed = [self._parse(topic, payload) for topic, payload in messages]
            self._prefetch(parsed)
            for (topic, payload), (event, problem) in zip(messages, parsed, strict=True):
                outcome = self._process(topic, payload, event, problem, registry)
                outcomes.append(outcome)
                if outcome.device and outcome.status != REJECTED:
                    touched.add(outcome.device)
            self._flush_events()
            self._flush_counts()
            moved = {}
            for device in sorted(touched):
                before = self.watermark(device)
                after = self._advance(device)
                if after != before or any(o.status == DUPLICATE and o.device == device
                                          for o in outcomes):
                    moved[device] = after
        return outcomes, moved

    @staticmethod
    def _parse(topic: str, payload: bytes) -> tuple[dict | None, str]:
        """The event of a message, or why it is not one."""
        try:
            event = parse_json_object(payload, "event")
            events.check_shape(event)
        except EventFormatError as exc:
            return None, f"malformed: {exc}"
        return event, ""

    def _prefetch(self, parsed: list[tuple[dict | None, str]]) -> None:
        """Read at once, per device, the stored rows a batch's chain checks look at (each
        event's seq and its two neighbours), instead of three reads per event. Rows this batch
        adds are added as they are; the device's lock keeps other workers out meanwhile."""
        wanted: dict[str, set[int]] = {}
        for event, _ in parsed:
            if event is not None:
                wanted.setdefault(event["device"], set()).update(
                    (event["seq"] - 1, event["seq"], event["seq"] + 1))
        self._known: dict[str, tuple[set[int], dict[int, tuple]]] = {}
        for device, seqs in sorted(wanted.items()):
            ordered = sorted(seqs)
            rows: dict[int, tuple] = {}
            for i in range(0, len(ordered), PREFETCH_CHUNK):
                chunk = ordered[i:i + PREFETCH_CHUNK]
                for seq, *row in self.db.execute(
                        "SELECT seq, hash, chain_hash, prev, type FROM events WHERE device=? AND "
                        f"seq IN ({', '.join('?' * len(chunk))})", (device, *chunk)).fetchall():
                    rows[seq] = tuple(row)
            self._known[device] = (seqs, rows)

    def _row(self, device: str, seq: int) -> tuple | None:
        """(hash, chain_hash, prev, type) of the stored event `seq`, or None."""
        seqs, rows = self._known.get(device, ((), {}))
        if seq in seqs:
            return rows.get(seq)
        self._flush_events()
        row = self.db.execute("SELECT hash, chain_hash, prev, type FROM events WHERE device=? "
                              "AND seq=?", (device, seq)).fetchone()
        return tuple(row) if row else None

    def _stored_payload(self, device: str, seq: int) -> bytes:
        self._flush_events()
        (payload,) = self.db.execute("SELECT payload FROM events WHERE device=? AND seq=?",
                                     (device, seq)).fetchone()
        return bytes(payload)

    def _flush_events(self) -> None:
        """Write the batch's new events so far (one statement: pipelined on PostgreSQL)."""
        if self._pending:
            self.db.executemany(
                "INSERT INTO events (device, seq, hash, prev, type, priority, ts, payload,"
                " received_at, chain_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self._pending)
            self._pending = []

    def _process(self, topic: str, payload: bytes, event: dict | None, problem: str,
                 registry) -> Outcome:
        device = topics.device_of(topic)
        if event is None:
            return self._reject(device, None, problem)
        seq = event["seq"]
        if event["device"] != device:
            return self._reject(device, seq, f"event names device {event['device']!r} but came "
                                             f"on the topic of {device!r}")
        limit = self._revoked.get(device)
        if limit is not None and seq > limit:
            return self._reject(device, seq, f"device revoked at the bank: seq {seq} is above "
                                             f"its recorded watermark {limit}")
        verifier = registry.get(device)
        if verifier is None:
            return self._reject(device, seq, "unknown device: no registered public key")
        try:
            events.verify(event, verifier)
        except (SignatureError, EventFormatError) as exc:
            return self._reject(device, seq, f"bad signature: {exc}")
        # One event, one signature: an ES256 copy with a high s is the other form of the same
        # signature (anyone can make it); it is stored in its low-s form, and refused from a
        # device that announced low-s signing before this seq.
        sig = b64url_decode(event["sig"])
        if event["alg"] == ES256 and is_high_s(sig):
            if self._announced_low_s(device, seq):
                return self._reject(device, seq, "bad signature: a high-s ES256 signature from "
                                                 "a device that signs with low s")
            event = {**event, "sig": b64url(low_s(sig))}
            payload = events.encode(event)
        digest = events.event_hash(event)
        row = self._row(device, seq)
        if row:
            if row[0] == digest or self._same_content(device, seq, event):
                self._count(device, "duplicates")
                return Outcome(DUPLICATE, device, seq, event["type"], event["priority"])
            # Validly signed by the device, yet not the event stored at this seq: the device
            # ran on an older copy of its outbox. A signed sale is a sale: kept as a forked
            # record with an alert (the device signs it again at a new seq, naming this one,
            # once it sees the bank's ack; a sale is paid once, by its voucher).
            self.db.execute(
                "INSERT INTO forks (device, seq, hash, type, priority, payload, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (device, seq, digest, event["type"], event["priority"], payload, time.time()))
            self.open_alert(device, "chain.forked",
                            f"seq {seq} arrived again with other content, validly signed: the "
                            "device ran on an older copy of its outbox; kept as a forked record")
            log.warning("ingest: %s seq %s: forked record kept", device, seq)
            return Outcome(FORKED, device, seq, event["type"], event["priority"],
                           "seq already stored with other content: kept as a forked record")
        self._named: list[tuple[str | None, str, int]] = []
        problem, named = self._chain_problem(device, event, digest)
        if problem:
            return self._reject(device, seq, f"out of chain: {problem}")
        if self._named:         # the form of a stored event's signature its chain names
            self._flush_events()
            self.db.executemany("UPDATE events SET chain_hash=? WHERE device=? AND seq=?",
                                self._named)
            for want, _, named_seq in self._named:
                known = self._row(device, named_seq)
                if known is not None:
                    self._known.setdefault(device, (set(), {}))[1][named_seq] = (
                        known[0], want, *known[2:])
        if event["type"] == AGENT_STARTED:
            announced = event["body"].get("signature")
            flag = int(isinstance(announced, dict) and announced.get("low_s") is True)
            self.db.execute(
                "INSERT INTO signing (device, seq, low_s) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (device, seq, flag))
            self._announced_low_s(device, seq)      # read before this one is added
            self._signing[device].append((seq, flag))
        # The form the device's chain names: the next event's prev when it is here; the one
        # form there is for Ed25519 and for a device that signs with low s; else not known
        # until the next event names it ('': the watermark waits below it).
        if named:
            chain = named
        elif event["alg"] == ES256 and not self._announced_low_s(device, seq):
            chain = ""
        else:
            chain = digest
        chain_hash = None if chain == digest else chain
        self._pending.append((device, seq, digest, event["prev"], event["type"],
                              event["priority"], event["ts"], payload, time.time(), chain_hash))
        seqs, rows = self._known.setdefault(device, (set(), {}))
        seqs.add(seq)
        rows[seq] = (digest, chain_hash, event["prev"], event["type"])
        if event["type"] == events.SEQ_SKIPPED:
            self.db.executemany(
                "INSERT INTO skipped (device, first, last, last_hash, declared_by)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(device, a, b, h, seq) for a, b, h in events.skipped_ranges(event)])
        elif event["type"] == events.CHAIN_RESUMED:
            # Declared lost on the device's signed word: no hash is known past them. What the
            # bank already holds of them stays; the watermark passes over the rest.
            after_seq, _, lost = events.resumed_chain(event)
            self.db.executemany(
                "INSERT INTO skipped (device, first, last, last_hash, declared_by)"
                " VALUES (?, ?, ?, NULL, ?) ON CONFLICT DO NOTHING",
                [(device, a, b, seq) for a, b in lost])
            count = sum(b - a + 1 for a, b in lost)
            self.open_alert(device, events.CHAIN_RESUMED,
                            f"the device resumed its chain at seq {seq} after seq {after_seq}; "
                            f"it declares {count} seq(s) lost: "
                            + ", ".join(f"{a}-{b}" for a, b in lost)[:300])
        elif event["type"] == PURCHASE_RECORDED:
            record_purchase(self, device, seq, event)
        elif event["type"] == PURCHASE_VOIDED:
            record_void(self, device, event["body"])
        elif event["type"] == DAY_CLOSED:
            record_day_closed(self, device, seq, event)
        if event["priority"] == "money":
            # Integrators listening on PostgreSQL hear of it once the batch commits.
            self.db.notify(MONEY_CHANNEL, json.dumps({"device": device, "seq": seq}))
        change = alert_change(event["type"], event["body"])
        if change:
            self._device_alert(device, seq, *change)
        self._count(device, "accepted")
        return Outcome(ACCEPTED, device, seq, event["type"], event["priority"])

    def _device_alert(self, device: str, seq: int, kind: str, opens: bool) -> None:
        """An event at `seq` opened or closed the device's alert `kind`: the later seq wins,
        whichever came first; `alerts` holds it open while its opening seq is the later."""
        column = "opened_seq" if opens else "closed_seq"
        self.db.execute(
            "INSERT INTO alert_state (device, kind, opened_seq, closed_seq) VALUES (?, ?, 0, 0)"
            " ON CONFLICT (device, kind) DO NOTHING", (device, kind))
        self.db.execute(f"UPDATE alert_state SET {column} = ? WHERE device = ? AND kind = ? AND"
                        f" {column} < ?", (seq, device, kind, seq))
        opened, closed = self.db.execute(
            "SELECT opened_seq, closed_seq FROM alert_state WHERE device = ? AND kind = ?",
            (device, kind)).fetchone()
        if opened > closed:
            self.open_alert(device, kind, f"opened by seq {opened}")
        else:
            self.close_alerts(device, kind)

    def _chain_problem(self, device: str, event: dict, digest: str) -> tuple[str | None,
                                                                             str | None]:
        """Why `event` (hash `digest`, in its low-s form) disagrees with a stored neighbour, or
        None; and the hash of this event that a stored seq + 1 names, if there is one. A hash
        of the other form of an ES256 signature names the same event."""
        seq, prev = event["seq"], event["prev"]
        if event["type"] == events.CHAIN_RESUMED:
            # It links to the last event the device vouches for, not to seq - 1.
            try:
                after_seq, after_hash, _ = events.resumed_chain(event)
            except EventFormatError as exc:
                return str(exc), None
            if after_seq == 0 and after_hash != events.GENESIS_PREV:
                return "a chain resumed after seq 0 must name 64 zeros", None
            if not self._names(device, after_seq, after_hash):
                return f"after_hash does not match the stored seq {after_seq}", None
        elif seq == 1:
            if prev != events.GENESIS_PREV:
                return "seq 1 must chain to 64 zeros", None
        else:
            before = self._names(device, seq - 1, prev)
            if not before:
                return f"prev does not match the hash of seq {seq - 1}", None
            declared = None if before is not _ABSENT else self.db.execute(
                "SELECT last_hash FROM skipped WHERE device=? AND last=?", (device, seq - 1)
            ).fetchone()
            if declared and declared[0] is not None and declared[0] != prev:
                return f"prev does not match the declared hash before the skipped seq {seq - 1}", \
                    None
        named = None
        after = self._row(device, seq + 1)
        if after and after[3] != events.CHAIN_RESUMED:
            if after[2] not in (digest, other_form_hash(event)):
                return f"the stored seq {seq + 1} does not chain to this event", None
            named = after[2]
        if event["type"] == events.SEQ_SKIPPED:
            try:
                ranges = events.skipped_ranges(event)
            except EventFormatError as exc:
                return str(exc), None
            for _first, last, last_hash in ranges:
                nxt = self._row(device, last + 1)
                if nxt and nxt[2] != last_hash:
                    return f"declared hash before seq {last + 1} does not match that event", None
        return None, named

    def _names(self, device: str, seq: int, named: str):
        """Whether `named` (a later event's prev, or a chain.resumed's after_hash) is the hash
        of the stored event `seq` in either form of its signature: True, and the form the
        device's chain names is recorded once the naming event is stored; False if it is
        another hash; `_ABSENT` if `seq` is not stored."""
        row = self._row(device, seq) if seq >= 1 else None
        if row is None:
            return _ABSENT
        digest, chain = row[0], row[1]
        if named != digest and named != chain:
            stored = parse_json_object(self._stored_payload(device, seq), "stored event")
            if named != other_form_hash(stored):
                return False
        want = None if named == digest else named
        if chain != want:
            self._named.append((want, device, seq))     # recorded if the event is stored
        return True

    def _announced_low_s(self, device: str, seq: int) -> bool:
        """Whether the device's latest `agent.started` at or before `seq` announced low-s
        signing (read once per batch and device)."""
        if device not in self._signing:
            self._signing[device] = [tuple(r) for r in self.db.execute(
                "SELECT seq, low_s FROM signing WHERE device=?", (device,)).fetchall()]
        before = [(n, flag) for n, flag in self._signing[device] if n <= seq]
        return bool(before and max(before)[1])

    def _same_content(self, device: str, seq: int, event: dict) -> bool:
        """Whether the stored event at `seq` has the canonical bytes of `event`, signature
        aside (two copies of one event, whatever their signatures)."""
        try:
            stored = parse_json_object(self._stored_payload(device, seq), "stored event")
        except EventFormatError:
            return False
        return signed_bytes(stored) == signed_bytes(event)

    def _reject(self, device: str | None, seq: int | None, reason: str) -> Outcome:
        log.warning("ingest: rejected %s seq %s: %s", device, seq, reason)
        (row_id,) = self.db.execute(
            "INSERT INTO rejections (device, seq, reason, at) VALUES (?, ?, ?, ?) RETURNING id",
            (device, seq, _text(reason[:500]), time.time())).fetchall()[0]
        # Keep the latest MAX_REJECTIONS only: a misbehaving (or hostile) publisher must not
        # grow the store without bound. The per-device `rejected` counter keeps the total.
        self.db.execute("DELETE FROM rejections WHERE id <= ?", (row_id - MAX_REJECTIONS,))
        if device:
            self._count(device, "rejected")
        return Outcome(REJECTED, device, seq, reason=reason)

    def _count(self, device: str, column: str) -> None:
        """Count an outcome for the device; the batch writes its counts once, at its end."""
        counts = self._counts.setdefault(device, dict.fromkeys(COUNTERS, 0))
        counts[column] += 1

    def _flush_counts(self) -> None:
        now = time.time()
        for device, counts in sorted(self._counts.items()):
            self.db.execute(
                "INSERT INTO device_state (device, watermark, watermark_hash, last_seen, accepted,"
                " duplicates, rejected) VALUES (?, 0, ?, ?, 0, 0, 0)"
                " ON CONFLICT(device) DO NOTHING",
                (device, events.GENESIS_PREV, now))
            heard = counts["accepted"] or counts["duplicates"]     # a rejection is not heard
            self.db.execute(
                "UPDATE device_state SET accepted = accepted + ?, duplicates = duplicates + ?,"
                " rejected = rejected + ?" + (", last_seen = ?" if heard else "")
                + " WHERE device = ?",
                (counts["accepted"], counts["duplicates"], counts["rejected"],
                 *((now,) if heard else ()), device))
        self._counts = {}

    # -- watermark ----------------------------------------------------------------------

    def watermark(self, device: str) -> tuple[int, str]:
        row = self.db.execute("SELECT watermark, watermark_hash FROM device_state WHERE device=?",
                              (device,)).fetchone()
        return (row[0], row[1]) if row else (0, events.GENESIS_PREV)

    def _advance(self, device: str) -> tuple[int, str]:
        """Walk from the watermark over stored events and declared ranges, reading the events
        in chunks rather than one seq at a time. The watermark's hash is the one the device's
        chain names (`chain_hash` when it is the other form of the signature)."""
        wm, wm_hash = self.watermark(device)
        nxt = wm + 1
        ranges = self.db.execute("SELECT first, last FROM skipped WHERE device=? AND last>=?",
                                 (device, nxt)).fetchall()
        rows, i, more = [], 0, True
        while True:
            if i == len(rows) and more:
                rows = self.db.execute(
                    "SELECT seq, hash, chain_hash FROM events WHERE device=? AND seq>=?"
                    " ORDER BY seq LIMIT ?", (device, nxt, ADVANCE_CHUNK)).fetchall()
                i, more = 0, len(rows) == ADVANCE_CHUNK
            while i < len(rows) and rows[i][0] < nxt:
                i += 1
            if i == len(rows) and more:
                continue                        # the chunk ran out below nxt: read on
            # An event that came in both forms of its signature, neither named yet by the
            # device's next event, is not acknowledged: the ack carries the device's hash.
            if i < len(rows) and rows[i][0] == nxt and rows[i][2] != "":
                wm, wm_hash, nxt = nxt, rows[i][2] or rows[i][1], nxt + 1
                i += 1
                continue
            ends = [last for first, last in ranges if first <= nxt <= last]
            if ends:
                nxt = max(ends) + 1
                continue
            break
        self.db.execute("UPDATE device_state SET watermark=?, watermark_hash=? WHERE device=?",
                        (wm, wm_hash, device))
        return wm, wm_hash

    # -- revocation ---------------------------------------------------------------------

    def revoke(self, device: str, reason: str = "") -> tuple[int, float, bool]:
        """Record `device` as revoked at its watermark now (under its lock, so that no batch of
        it is half way); (watermark, revoked_at, whether this call revoked it). Revoking again
        keeps the first record."""
        with self.db.transaction([device]):
            wm, _ = self.watermark(device)
            at = time.time()
            new = bool(self.db.execute(
                "INSERT INTO revoked (device, watermark, revoked_at, reason) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (device) DO NOTHING RETURNING device",
                (device, wm, at, _text(reason[:500]))).fetchall())
            if not new:
                wm, at = self.db.execute("SELECT watermark, revoked_at FROM revoked WHERE "
                                         "device=?", (device,)).fetchone()
        return wm, at, new

    def revoked(self) -> dict[str, int]:
        """Revoked devices and the watermark above which their events are refused."""
        return dict(self.db.execute("SELECT device, watermark FROM revoked").fetchall())

    # -- status & alerts ---------------------------------------------------------------

    def devices(self) -> list[dict]:
        cols = ["device", "watermark", "last_seen", "accepted", "duplicates", "rejected"]
        rows = self.db.execute(f"SELECT {', '.join(cols)} FROM device_state").fetchall()
        # sorted here: PostgreSQL's collation of the database may order '-' otherwise
        return sorted((dict(zip(cols, r, strict=True)) for r in rows), key=lambda d: d["device"])

    def open_alerts(self, device: str | None = None) -> list[dict]:
        sql = "SELECT id, device, kind, detail, opened_at FROM alerts WHERE closed_at IS NULL"
        args: tuple = ()
        if device:
            sql, args = sql + " AND device = ?", (device,)
        sql += " ORDER BY id"
        cols = ["id", "device", "kind", "detail", "opened_at"]
        return [dict(zip(cols, r, strict=True)) for r in self.db.execute(sql, args).fetchall()]

    def open_alert(self, device: str, kind: str, detail: str) -> bool:
        """Open an alert unless one of this kind is open for the device (in the database, so
        one however many workers raise it); True if this call opened it."""
        return bool(self.db.execute(
            "INSERT INTO alerts (device, kind, detail, opened_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (device, kind) WHERE closed_at IS NULL DO NOTHING RETURNING id",
            (device, kind, detail, time.time())).fetchall())

    def close_alerts(self, device: str, kind: str) -> int:
        cur = self.db.execute(
            "UPDATE alerts SET closed_at=? WHERE device=? AND kind=? AND closed_at IS NULL",
            (time.time(), device, kind))
        return cur.rowcount

    def stored_seqs(self, device: str) -> list[int]:
        return [r[0] for r in self.db.execute(
            "SELECT seq FROM events WHERE device=? ORDER BY seq", (device,)).fetchall()]

    def payloads(self, device: str) -> list[bytes]:
        return [bytes(r[0]) for r in self.db.execute(
            "SELECT payload FROM events WHERE device=? ORDER BY seq", (device,)).fetchall()]

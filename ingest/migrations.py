"""The ingest store's schema, as numbered migrations recorded in `_migrations`, for SQLite and
PostgreSQL alike.

The bank side keeps its own schema history, apart from the device's outbox (agent.spine): the
two evolve separately, and the ingest shares only the wire contract with the device. Each
migration is plain SQL, runs once, in order, in one transaction with its record; a store whose
migrations are all recorded is opened without writing anything. Column types that differ
between the databases are written as tokens (`{int}`, `{real}`, `{blob}`, `{id}`) that
ingest/db.py's `TYPES` spells for each; everything else is SQL both understand.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ingest.db import TYPES

#: (name, statements). Names are recorded, so a migration is never renamed or edited once
#: released; a change of schema is a new migration. (0001 and 0002 spell, on SQLite, the very
#: statements they ran before PostgreSQL came.)
MIGRATIONS: list[tuple[str, tuple[str, ...]]] = [
    ("0001-ingest-store", (
        "CREATE TABLE events (device TEXT, seq {int}, hash TEXT, prev TEXT, type TEXT, "
        "priority TEXT, ts TEXT, payload {blob}, received_at {real}, PRIMARY KEY (device, seq))",
        "CREATE TABLE skipped (device TEXT, first {int}, last {int}, last_hash TEXT, "
        "declared_by {int}, PRIMARY KEY (device, first, last))",
        "CREATE TABLE devices (device TEXT PRIMARY KEY, watermark {int}, watermark_hash TEXT, "
        "last_seen {real}, accepted {int}, duplicates {int}, rejected {int})",
        "CREATE TABLE rejections (id {id}, device TEXT, seq {int}, "
        "reason TEXT, at {real})",
        "CREATE TABLE alerts (id {id}, device TEXT, kind TEXT, detail TEXT, "
        "opened_at {real}, closed_at {real})",
    )),
    # A second, validly signed event at a stored seq (a device that ran on a restored copy
    # of its outbox): kept, never dropped, for people to reconcile.
    ("0002-forked-records", (
        "CREATE TABLE forks (device TEXT, seq {int}, hash TEXT, type TEXT, priority TEXT, "
        "payload {blob}, received_at {real}, PRIMARY KEY (device, seq, hash))",
    )),
    # At most one open alert of a kind per device, whichever worker raises it (the silence
    # check runs in every worker, outside any batch). Duplicates that workers sharing a SQLite
    # file could open before are closed first, the oldest kept open.
    ("0003-one-open-alert", (
        "UPDATE alerts SET closed_at = opened_at WHERE closed_at IS NULL AND id > "
        "(SELECT min(a.id) FROM alerts a WHERE a.device = alerts.device "
        "AND a.kind = alerts.kind AND a.closed_at IS NULL)",
        "CREATE UNIQUE INDEX alerts_open ON alerts (device, kind) WHERE closed_at IS NULL",
    )),
    # A message that fails to be stored every time while the database answers (a poison
    # message) is parked here with the reason, so that it blocks nothing behind it.
    ("0004-parked-messages", (
        "CREATE TABLE parked (id {id}, device TEXT, topic TEXT, payload {blob}, reason TEXT, "
        "worker TEXT, at {real})",
    )),
    # The bank recomputes every purchase (ingest/purchases.py): the backend's price tables as
    # the bank holds them, and each verified purchase with its recomputation and payment; and
    # the first of the views integrators read (docs/ingest.md, "What integrators read"), whose
    # columns are a contract: `schema_version` says which.
    ("0005-purchases-and-price-tables", (
        "CREATE TABLE price_tables (table_id TEXT NOT NULL, version {int} NOT NULL, "
        "digest TEXT NOT NULL, document TEXT NOT NULL, added_at {real}, "
        "PRIMARY KEY (table_id, version))",
        "CREATE TABLE purchase_state (device TEXT NOT NULL, seq {int} NOT NULL, voucher TEXT, "
        "day TEXT, farmer_id TEXT, net_g {int}, amount TEXT, amount_fen {int}, "
        "recomputed TEXT, recomputed_fen {int}, result TEXT NOT NULL, reason TEXT, "
        "payment TEXT NOT NULL, payment_ref TEXT, paid_at {real}, recorded_at TEXT, "
        "PRIMARY KEY (device, seq))",
        "CREATE INDEX purchase_state_payment ON purchase_state (payment)",
        "CREATE INDEX purchase_state_day ON purchase_state (device, day)",
        # Each station's signed end of day (day.closed), against which its day is reconciled.
        "CREATE TABLE day_closures (device TEXT NOT NULL, day TEXT NOT NULL, seq {int} NOT NULL, "
        "count {int}, net_g {int}, amount TEXT, amount_fen {int}, voided {int}, "
        "acknowledged {int}, closed_ts TEXT, PRIMARY KEY (device, day, seq))",
        "CREATE VIEW schema_version AS SELECT 1 AS version",
        "CREATE VIEW purchases AS SELECT p.device, p.seq, p.voucher, p.day, p.farmer_id, "
        "p.net_g, p.amount, p.amount_fen, p.recomputed, p.recomputed_fen, p.result, p.reason, "
        "p.payment, p.payment_ref, p.paid_at, p.recorded_at, e.hash, {event_json} AS event "
        "FROM purchase_state p JOIN events e ON e.device = p.device AND e.seq = p.seq",
        # A station's day as it closed it (its last day.closed of that day) against what the
        # bank stored of that day (voided sales apart): reconciled when all three agree.
        "CREATE VIEW reconciliation AS SELECT r.device, r.day, r.closed_seq, r.closed_ts, "
        "r.station_count, r.station_net_g, r.station_amount_fen, r.bank_count, r.bank_net_g, "
        "r.bank_amount_fen, r.bank_held, "
        "CASE WHEN r.station_count = r.bank_count AND r.station_net_g = r.bank_net_g AND "
        "r.station_amount_fen = r.bank_amount_fen THEN 1 ELSE 0 END AS reconciled FROM ("
        "SELECT c.device, c.day, c.seq AS closed_seq, c.closed_ts, c.count AS station_count, "
        "c.net_g AS station_net_g, c.amount_fen AS station_amount_fen, "
        "(SELECT count(*) FROM purchase_state p WHERE p.device = c.device AND p.day = c.day "
        "AND p.payment <> 'voided') AS bank_count, "
        "(SELECT coalesce(sum(p.net_g), 0) FROM purchase_state p WHERE p.device = c.device "
        "AND p.day = c.day AND p.payment <> 'voided') AS bank_net_g, "
        "(SELECT coalesce(sum(p.amount_fen), 0) FROM purchase_state p WHERE p.device = c.device "
        "AND p.day = c.day AND p.payment <> 'voided') AS bank_amount_fen, "
        "(SELECT count(*) FROM purchase_state p WHERE p.device = c.device AND p.day = c.day "
        "AND p.payment = 'held') AS bank_held "
        "FROM day_closures c WHERE c.seq = (SELECT max(c2.seq) FROM day_closures c2 "
        "WHERE c2.device = c.device AND c2.day = c.day)) r",
    )),
    # Revocation at the bank: the device's watermark when it was revoked; its events above
    # it are refused, whatever the broker's CRL says.
    ("0006-revoked-devices", (
        "CREATE TABLE revoked (device TEXT PRIMARY KEY, watermark {int}, revoked_at {real}, "
        "reason TEXT)",
    )),
    # One event, one signature. `events.payload` and `hash` hold the low-s form of an ES256
    # signature; `chain_hash` is the hash of the form the device's chain names when it is the
    # other one ('' while two forms came and no later event has named one; NULL: `hash`).
    # `signing` records what each `agent.started` announced (low_s: 1 or 0) at its seq.
    ("0007-one-signature", (
        "ALTER TABLE events ADD COLUMN chain_hash TEXT",
        "CREATE TABLE signing (device TEXT, seq {int}, low_s {int}, PRIMARY KEY (device, seq))",
    )),
    # The device's own alerts (agent/contract/alerts.py): the seqs of the latest event that
    # opened and that closed each, so that the order of arrival does not matter; the alert is
    # open, in `alerts`, while opened_seq > closed_seq.
    ("0008-device-alerts", (
        "CREATE TABLE alert_state (device TEXT, kind TEXT, opened_seq {int}, closed_seq {int}, "
        "PRIMARY KEY (device, kind))",
    )),
    # The rest of what integrators read (docs/ingest.md): `devices`, which names the view, so
    # the table of the ingest's counters becomes `device_state`; and `custody_alerts`.
    ("0009-integrator-views", (
        "ALTER TABLE devices RENAME TO device_state",
        "CREATE VIEW devices AS SELECT d.device, d.last_seen, d.watermark, d.accepted, "
        "d.duplicates, d.rejected, "
        "(SELECT r.watermark FROM revoked r WHERE r.device = d.device) AS revoked_after_seq, "
        "(SELECT count(*) FROM alerts a WHERE a.device = d.device AND a.closed_at IS NULL) "
        "AS open_alerts FROM device_state d",
        "CREATE VIEW custody_alerts AS SELECT s.device, s.kind AS alert, s.opened_seq, "
        "e.ts AS opened_ts, CASE WHEN s.closed_seq > s.opened_seq THEN s.closed_seq END "
        "AS closed_seq, CASE WHEN s.opened_seq > s.closed_seq THEN 1 ELSE 0 END AS open "
        "FROM alert_state s LEFT JOIN events e ON e.device = s.device AND e.seq = s.opened_seq "
        "WHERE s.opened_seq > 0 AND (s.kind LIKE 'custody.%' OR s.kind LIKE 'door.opened%' "
        "OR s.kind LIKE 'tamper.%' OR s.kind LIKE 'power.%')",
    )),
]


def statements(dialect: str, migration: tuple[str, ...]) -> list[str]:
    """A migration's statements spelt for `dialect` ("sqlite" or "postgresql")."""
    return [s.format(**TYPES[dialect]) for s in migration]


def _recorded(db) -> set[str]:
    if not db.has_table("_migrations"):
        return set()
    return {name for (name,) in db.execute("SELECT name FROM _migrations").fetchall()}


def migrate(db) -> list[str]:
    """Apply the migrations `db` (an ingest.db database) has not recorded; return their names.
    Several workers may start at once: a lock is taken first (SQLite's write lock, an advisory
    lock on PostgreSQL), and what another worker applied meanwhile is not applied again."""
    if {name for name, _ in MIGRATIONS} <= _recorded(db):
        return []
    ran = []
    with db.migration_transaction():
        db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, "
                   "applied_at TEXT)")
        done = _recorded(db)
        for name, migration in MIGRATIONS:
            if name in done:
                continue
            for statement in statements(db.dialect, migration):
                db.execute(statement)
            db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                       (name, datetime.now(timezone.utc).isoformat()))
            ran.append(name)
    return ran

"""The ingest store's schema, as numbered migrations recorded in `_migrations`.

The bank side keeps its own schema history, apart from the device's outbox (agent.spine): the
two evolve separately, and the ingest shares only the wire contract with the device. Each
migration is plain SQL, runs once, in order, in one transaction with its record; a store whose
migrations are all recorded is opened without writing anything.
"""

from __future__ import annotations

from datetime import datetime, timezone

#: (name, statements). Names are recorded, so a migration is never renamed or edited once
#: released; a change of schema is a new migration.
MIGRATIONS: list[tuple[str, tuple[str, ...]]] = [
    ("0001-ingest-store", (
        "CREATE TABLE events (device TEXT, seq INTEGER, hash TEXT, prev TEXT, type TEXT, "
        "priority TEXT, ts TEXT, payload BLOB, received_at REAL, PRIMARY KEY (device, seq))",
        "CREATE TABLE skipped (device TEXT, first INTEGER, last INTEGER, last_hash TEXT, "
        "declared_by INTEGER, PRIMARY KEY (device, first, last))",
        "CREATE TABLE devices (device TEXT PRIMARY KEY, watermark INTEGER, watermark_hash TEXT, "
        "last_seen REAL, accepted INTEGER, duplicates INTEGER, rejected INTEGER)",
        "CREATE TABLE rejections (id INTEGER PRIMARY KEY, device TEXT, seq INTEGER, "
        "reason TEXT, at REAL)",
        "CREATE TABLE alerts (id INTEGER PRIMARY KEY, device TEXT, kind TEXT, detail TEXT, "
        "opened_at REAL, closed_at REAL)",
    )),
    # A second, validly signed event at a stored seq (a device that ran on a restored copy
    # of its outbox): kept, never dropped, for people to reconcile.
    ("0002-forked-records", (
        "CREATE TABLE forks (device TEXT, seq INTEGER, hash TEXT, type TEXT, priority TEXT, "
        "payload BLOB, received_at REAL, PRIMARY KEY (device, seq, hash))",
    )),
]


def _recorded(conn) -> set[str]:
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                        "AND name = '_migrations'").fetchone():
        return set()
    return {name for (name,) in conn.execute("SELECT name FROM _migrations")}


def migrate(conn) -> list[str]:
    """Apply the migrations `conn` (a sqlite3 connection in autocommit mode) has not recorded;
    return their names. Several workers may start at once: the write lock is taken first, and
    what another worker applied meanwhile is not applied again."""
    if {name for name, _ in MIGRATIONS} <= _recorded(conn):
        return []
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, "
                     "applied_at TEXT)")
        done = _recorded(conn)
        ran = []
        for name, statements in MIGRATIONS:
            if name in done:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                         (name, datetime.now(timezone.utc).isoformat()))
            ran.append(name)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return ran

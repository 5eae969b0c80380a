"""Named schema migrations for the agent's SQLite files, recorded in `_migrations`.

Each migration runs once, in order, inside a transaction, through sqlite-utils' table API. A
database whose migrations are all recorded is opened without touching sqlite-utils at all, so
the hot path works over any DB-API-like connection (the power-loss tests use apsw), and a
process that finds its schema up to date never imports sqlite-utils (about 10 MiB of memory on
a device that has little).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils

Migration = tuple[str, Callable[["sqlite_utils.Database"], None]]


def applied(conn) -> set[str]:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='_migrations'"
    ).fetchone()
    if not exists:
        return set()
    return {row[0] for row in conn.execute("SELECT name FROM _migrations").fetchall()}


def migrate(conn, migrations: Sequence[Migration]) -> list[str]:
    """Apply the missing migrations; return their names. `conn` must be a sqlite3 connection
    in autocommit mode when anything is missing."""
    done = applied(conn)
    todo = [(name, fn) for name, fn in migrations if name not in done]
    if not todo:
        return []
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        db["_migrations"].create({"name": str, "applied_at": str}, pk="name", if_not_exists=True)
        done = applied(conn)  # another process may have migrated while we waited for the lock
        ran = []
        for name, fn in todo:
            if name in done:
                continue
            fn(db)
            db["_migrations"].insert(
                {"name": name, "applied_at": datetime.now(timezone.utc).isoformat()}
            )
            ran.append(name)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return ran

"""Start-up integrity check of the outbox, and quarantine of a corrupt file.

A corrupt outbox is never wiped: it is moved aside with its WAL, whatever can still be read is
salvaged into a fresh database that continues the chain from the last good event, and the agent
raises an `outbox.quarantined` alert so that people look at the disk.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Salvage:
    quarantined_to: Path
    head_seq: int = 0
    head_hash: str | None = None
    acked_seq: int = 0
    acked_hash: str | None = None
    rows: list[tuple] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def check(path: Path) -> str | None:
    """None when the file passes `PRAGMA quick_check`, else what is wrong."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        # Only corruption is a reason to move the file aside; a lock or a passing I/O error
        # must not quarantine a healthy outbox that another process has open.
        if getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
            return str(exc)
        raise
    result = "; ".join(str(r[0]) for r in rows)
    return None if result == "ok" else result


def quarantine(path: Path) -> Salvage:
    """Move a corrupt outbox aside and read back what can still be read."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            shutil.move(src, Path(str(target) + suffix))
    salvage = Salvage(target)
    try:
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
    except sqlite3.DatabaseError as exc:
        salvage.errors.append(f"open: {exc}")
        return salvage
    try:
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            salvage.head_seq, salvage.head_hash = int(meta["head_seq"]), meta["head_hash"]
            salvage.acked_seq, salvage.acked_hash = int(meta["acked_seq"]), meta["acked_hash"]
        except (sqlite3.DatabaseError, KeyError, ValueError) as exc:
            salvage.errors.append(f"meta: {exc}")
        cols = "seq, priority, type, hash, payload, size, created"
        try:
            for row in conn.execute(f"SELECT {cols} FROM events ORDER BY seq"):
                salvage.rows.append(row)
        except sqlite3.DatabaseError as exc:
            salvage.errors.append(f"events: {exc}")
            # Past the damaged page, look events up one by one: a b-tree lookup may still
            # reach rows that a full scan cannot.
            start = salvage.rows[-1][0] + 1 if salvage.rows else 1
            lost = 0
            for seq in range(start, salvage.head_seq + 1):
                try:
                    row = conn.execute(f"SELECT {cols} FROM events WHERE seq = ?",
                                       (seq,)).fetchone()
                except sqlite3.DatabaseError:
                    lost += 1
                    continue
                if row:
                    salvage.rows.append(row)
            if lost:
                salvage.errors.append(f"events: {lost} rows unreadable")
    finally:
        conn.close()
    if salvage.rows and salvage.rows[-1][0] > salvage.head_seq:
        salvage.head_seq, salvage.head_hash = salvage.rows[-1][0], salvage.rows[-1][3]
    log.error("outbox %s failed its integrity check; moved to %s (salvaged %d events)",
              path, target, len(salvage.rows))
    return salvage


def restore(outbox, salvage: Salvage) -> None:
    """Write the salvaged head and unacknowledged rows into a fresh, migrated outbox, in one
    transaction (through the outbox's own `write_all`)."""
    rows = [r for r in salvage.rows if r[0] > salvage.acked_seq]
    meta = {"used_bytes": str(sum(r[5] for r in rows))}
    if salvage.head_hash:
        meta.update(head_seq=str(salvage.head_seq), head_hash=salvage.head_hash)
    if salvage.acked_hash:
        meta.update(acked_seq=str(salvage.acked_seq), acked_hash=salvage.acked_hash)
    outbox.write_all([
        ("INSERT INTO events (seq, priority, type, state, hash, payload, size, created)"
         " VALUES (?, ?, ?, 0, ?, ?, ?, ?)", rows),
        ("UPDATE meta SET value = ? WHERE key = ?", [(v, k) for k, v in meta.items()]),
    ])

"""Start-up integrity check of the outbox, and quarantine of a corrupt file.

A corrupt outbox is never wiped. Quarantine is atomic and complete:

1. Everything still readable is read from the damaged file where it lies: the chain's head and
   acknowledged point, the unacknowledged events, and the rows of every other table (seen
   command ids, vouchers, sales, the card blacklist, owed card writes, emit keys, and whatever
   later migrations add), row by row past a damaged page.
2. A fresh outbox is built beside it (`outbox.sqlite.rebuilding`): migrated, with all of that
   written back in one transaction, and the `outbox.quarantined` alert appended to it. It is
   closed, synced, and renamed `outbox.sqlite.rebuilt`: from then on the rebuild is complete.
3. The damaged file is moved aside (its -wal and -shm first, so that no stale WAL is ever
   left beside the new file) to the name the alert gives, and the rebuilt file takes its place.

A crash before step 3 leaves the damaged file in place and a rebuild that the next start
discards and makes again; a crash within step 3 is completed by the next start (`finish`). So
every start sees either the old state or the new one, and the alert is recorded exactly once,
inside the file that replaces the damaged one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.contract.chain import runs
from agent.contract.durable import fsync_dir
from agent.contract.events import CHAIN_RESUMED, GENESIS_PREV, Draft
from agent.spine.outbox import (
    RESERVE_CHUNKS,
    high_water_path,
    read_high_water,
    reserve_chunks,
)

log = logging.getLogger(__name__)

REBUILDING = ".rebuilding"
REBUILT = ".rebuilt"
SUFFIXES = ("-wal", "-shm", "")     # the order files of one database are moved in
#: Tables that are not copied as they are: the events and meta are the chain's (written back
#: by `restore`), the migrations are the new file's own.
OWN_TABLES = {"events", "meta", "_migrations"}
MAX_PROBE = 1_000_000               # rows looked up one by one past a damaged page, at most


@dataclass
class Salvage:
    quarantined_to: Path
    head_seq: int = 0
    head_hash: str | None = None
    acked_seq: int = 0
    acked_hash: str | None = None
    rows: list[tuple] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    #: Other tables: name -> (columns, rows)
    tables: dict[str, tuple[list[str], list[tuple]]] = field(default_factory=dict)


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


def interrupted(path: Path) -> bool:
    """A quarantine was cut short: its rebuild (complete or not) is still beside the file."""
    return any(Path(f"{path}{end}").exists() for end in (REBUILT, REBUILDING))


def quarantine(path: Path, open_fresh: Callable[[Path], object],
               alert: Callable[[Salvage], object]) -> Salvage:
    """Replace the corrupt outbox at `path` with a rebuilt one (see the module's docstring).
    `open_fresh(path)` opens a new, migrated Outbox there, whose high-water file is the
    damaged outbox's; `alert(salvage)` is the Draft of the `outbox.quarantined` alert."""
    scratch = Path(f"{path}{REBUILDING}")
    _remove(scratch)
    salvage = read(path)
    salvage.quarantined_to = path.with_name(
        f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    resume = plan_resume(salvage, read_high_water(high_water_path(path)))
    outbox = open_fresh(scratch)
    try:
        restore(outbox, salvage, resume)
        if resume is not None:
            outbox.append(Draft(CHAIN_RESUMED, "alert", resume.body()))
        outbox.append(alert(salvage))
    finally:
        outbox.close()
    _settle(scratch)
    for chunk in reserve_chunks(scratch):
        chunk.unlink(missing_ok=True)
    os.replace(scratch, Path(f"{path}{REBUILT}"))
    fsync_dir(path.parent)
    finish(path)
    log.error("outbox %s failed its integrity check; moved to %s (salvaged %d events)",
              path, salvage.quarantined_to, len(salvage.rows))
    return salvage


def finish(path: Path) -> bool:
    """Complete a quarantine whose rebuild is done: move the damaged file aside and put the
    rebuilt one in its place. A rebuild that was not done is discarded (the damaged file is
    still in place, and is quarantined again). True when a rebuilt file was put in place."""
    rebuilt = Path(f"{path}{REBUILT}")
    if not rebuilt.exists():
        _remove(Path(f"{path}{REBUILDING}"))
        return False
    for suffix in ("-wal", "-shm"):        # settled: nothing in them, and not to be moved
        Path(f"{rebuilt}{suffix}").unlink(missing_ok=True)
    target = _moved_to(rebuilt) or path.with_name(
        f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in SUFFIXES:
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.replace(src, Path(f"{target}{suffix}"))
    fsync_dir(path.parent)
    os.replace(rebuilt, path)
    fsync_dir(path.parent)
    return True


def read(path: Path) -> Salvage:
    """Everything still readable in the outbox at `path`, read where it lies (or, when the
    file was cut short, from a copy padded back to its stated size: SQLite reads nothing of
    a file shorter than its header says, though its first pages are intact)."""
    salvage = Salvage(path)
    padded = _padded_copy(path)
    if padded is not None:
        salvage.errors.append(f"file: truncated to {path.stat().st_size} bytes")
    try:
        conn = sqlite3.connect(f"file:{padded or path}?mode=ro", uri=True)
    except sqlite3.DatabaseError as exc:
        salvage.errors.append(f"open: {exc}")
        if padded is not None:
            _remove(padded)
        return salvage
    try:
        try:
            salvage.meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            meta = salvage.meta
            salvage.head_seq, salvage.head_hash = int(meta["head_seq"]), meta["head_hash"]
            salvage.acked_seq, salvage.acked_hash = int(meta["acked_seq"]), meta["acked_hash"]
        except (sqlite3.DatabaseError, KeyError, ValueError) as exc:
            salvage.errors.append(f"meta: {exc}")
        _read_events(conn, salvage)
        _read_tables(conn, salvage)
    finally:
        conn.close()
        if padded is not None:
            _remove(padded)
    if salvage.rows and salvage.rows[-1][0] > salvage.head_seq:
        salvage.head_seq, salvage.head_hash = salvage.rows[-1][0], salvage.rows[-1][3]
    return salvage


@dataclass(frozen=True)
class Resume:
    """Where the chain goes on when the damaged outbox cannot vouch for all of it: after
    `after_seq` (hash `after_hash`), with a `chain.resumed` event at `head + 1`, and the seqs
    in `lost` declared as recorded-perhaps but unreadable."""

    after_seq: int
    after_hash: str
    head: int                       # the seq before the chain.resumed event
    lost: tuple[tuple[int, int], ...]
    reason: str

    def body(self) -> dict:
        return {"after_seq": self.after_seq, "after_hash": self.after_hash,
                "lost": [{"from": a, "to": b} for a, b in self.lost],
                "reason": self.reason[:300]}


def plan_resume(salvage: Salvage, high_water: int) -> Resume | None:
    """None when the salvage has the whole unacknowledged chain; else where to resume.

    The seqs the device can no longer vouch for are the unreadable ones among those it had
    (holes in the salvaged rows), and those above the last readable event that it may have
    used: up to the head the readable `meta` states, or, without it, up to the high-water
    mark (the seqs reserved outside the database). A restored copy older than the high-water
    mark is caught the same way, when its `meta` cannot be read."""
    acked = salvage.acked_seq if salvage.acked_hash else 0
    hashes = {r[0]: r[3] for r in salvage.rows if r[0] > acked}
    top = max(hashes, default=acked)
    meta_ok = not any(e.startswith("meta") for e in salvage.errors)
    claimed = int(salvage.meta.get("head_seq", 0) or 0) if meta_ok else 0
    head = max(top, claimed, 0 if meta_ok else high_water)
    lost = runs([n for n in range(acked + 1, head + 1) if n not in hashes])
    if not lost:
        return None
    after_hash = hashes[top] if top != acked else (salvage.acked_hash or GENESIS_PREV)
    why = "; ".join(salvage.errors) or "the outbox failed its integrity check"
    return Resume(top, after_hash, head, tuple(lost), f"outbox quarantined: {why}")


def restore(outbox, salvage: Salvage, resume: Resume | None = None) -> None:
    """Write the salvaged head, the unacknowledged events and every other table's rows into
    a fresh, migrated outbox, in one transaction (through the outbox's own `write_all`). With
    a `resume`, the head is set so that the next event (the chain.resumed) follows it."""
    rows = [r for r in salvage.rows if r[0] > salvage.acked_seq]
    meta = {k: v for k, v in salvage.meta.items()
            if k not in ("head_seq", "head_hash", "acked_seq", "acked_hash", "used_bytes")}
    meta["used_bytes"] = str(sum(r[5] for r in rows))
    if resume is not None:
        salvage.head_seq, salvage.head_hash = resume.head, resume.after_hash
    if salvage.head_hash:
        meta.update(head_seq=str(salvage.head_seq), head_hash=salvage.head_hash)
    if salvage.acked_hash:
        meta.update(acked_seq=str(salvage.acked_seq), acked_hash=salvage.acked_hash)
    steps: list[tuple[str, list | None]] = [
        ("INSERT INTO events (seq, priority, type, state, hash, payload, size, created)"
         " VALUES (?, ?, ?, 0, ?, ?, ?, ?)", rows),
        ("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(meta.items())),
    ]
    known = {name: {c[1] for c in outbox.read(f'PRAGMA table_info("{name}")')}
             for (name,) in outbox.read("SELECT name FROM sqlite_master WHERE type = 'table'")
             if name not in OWN_TABLES and not name.startswith("sqlite_")}
    for name, (columns, table_rows) in salvage.tables.items():
        keep = [i for i, c in enumerate(columns) if c in known.get(name, ())]
        if not keep or not table_rows:
            continue
        names = ", ".join(f'"{columns[i]}"' for i in keep)
        marks = ", ".join("?" * len(keep))
        steps.append((f'INSERT OR REPLACE INTO "{name}" ({names}) VALUES ({marks})',
                      [tuple(row[i] for i in keep) for row in table_rows]))
    outbox.write_all(steps)


# -- reading past damage --------------------------------------------------------------------

def _read_events(conn, salvage: Salvage) -> None:
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


def _read_tables(conn, salvage: Salvage) -> None:
    try:
        names = [n for (n,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
    except sqlite3.DatabaseError as exc:
        salvage.errors.append(f"schema: {exc}")
        return
    for name in names:
        if name in OWN_TABLES or name.startswith("sqlite_"):
            continue
        try:
            cursor = conn.execute(f'SELECT * FROM "{name}"')
            columns = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        except sqlite3.DatabaseError as exc:
            salvage.errors.append(f"{name}: {exc}")
            columns, rows = _probe(conn, name, salvage)
        if columns:
            salvage.tables[name] = (columns, rows)


def _probe(conn, name: str, salvage: Salvage) -> tuple[list[str], list[tuple]]:
    """The rows of a damaged table that can still be reached one rowid at a time."""
    try:
        cursor = conn.execute(f'SELECT * FROM "{name}" WHERE rowid = -1')
        columns = [d[0] for d in cursor.description]
        top = conn.execute(f'SELECT max(rowid) FROM "{name}"').fetchone()[0] or 0
    except sqlite3.DatabaseError:
        return [], []
    rows, lost = [], 0
    for rowid in range(1, min(top, MAX_PROBE) + 1):
        try:
            row = conn.execute(f'SELECT * FROM "{name}" WHERE rowid = ?', (rowid,)).fetchone()
        except sqlite3.DatabaseError:
            lost += 1
            continue
        if row:
            rows.append(row)
    if lost:
        salvage.errors.append(f"{name}: {lost} rows unreadable")
    return columns, rows


# -- files ----------------------------------------------------------------------------------

def _padded_copy(path: Path) -> Path | None:
    """A copy of a database shorter than its header's page count, with zero pages added up
    to that count (and its WAL beside it), or None when the file is not cut short."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
        size = path.stat().st_size
    except OSError:
        return None
    if len(header) < 100 or not header.startswith(b"SQLite format 3\0"):
        return None
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    stated = int.from_bytes(header[28:32], "big") * page_size
    if page_size < 512 or stated <= size:
        return None
    copy = Path(f"{path}.salvage")
    _remove(copy)
    shutil.copyfile(path, copy)
    os.truncate(copy, stated)
    if Path(f"{path}-wal").exists():
        shutil.copyfile(f"{path}-wal", f"{copy}-wal")
    return copy


def _remove(path: Path) -> None:
    """Delete a scratch database (a rebuild, a padded copy) with its WAL and reserve."""
    for suffix in (*SUFFIXES, *(f".reserve{i}" for i in range(RESERVE_CHUNKS))):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _settle(path: Path) -> None:
    """Leave the rebuilt database whole in its one file (no WAL) and durable."""
    if Path(f"{path}-wal").exists():
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _moved_to(rebuilt: Path) -> Path | None:
    """Where the rebuild's alert says the damaged file goes (so that a finish after a crash
    keeps the file and its WAL together under one name)."""
    try:
        # immutable: the settled file has no WAL, and no -wal or -shm must appear beside it
        conn = sqlite3.connect(f"file:{rebuilt}?immutable=1", uri=True)
        try:
            row = conn.execute("SELECT payload FROM events WHERE type = 'outbox.quarantined' "
                               "ORDER BY seq DESC LIMIT 1").fetchone()
        finally:
            conn.close()
        return rebuilt.with_name(json.loads(row[0])["body"]["moved_to"]) if row else None
    except (sqlite3.DatabaseError, ValueError, KeyError, TypeError):
        return None

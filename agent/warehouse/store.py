"""The warehouse's state on disk, so a restart forgets no lot, pledge, release or tag.

A small SQLite file beside the outbox (`warehouse.sqlite` in the data folder), its schema built
by named migrations (agent.spine.migrations). The running service is its only writer, except for the
`receipts` inbox, where `cocoon-agent warehouse receive` leaves lots for the service to take in.
The terminal view reads it (it also holds reader health, climate and open alerts for that).

Order of writes: the event first, then this state. A crash between the two makes the service
detect the same change again after the restart (a duplicate alert), never lose one.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import sqlite_utils

from agent.contract.clock import parse_utc_timestamp, utc_timestamp
from agent.spine.migrations import migrate
from agent.warehouse.custody import Custody, Lot, Pledge, Release


def _m001(db: sqlite_utils.Database) -> None:
    db["tags"].create({"epc": str, "status": str, "reader": str, "antenna": int,
                       "updated": float}, pk="epc")
    db["lots"].create({"lot": str, "purchases": str, "epcs": str, "kg": str}, pk="lot")
    db["pledges"].create({"id": str, "lots": str, "tags": int, "kg": str,
                          "released_tags": int, "short": int}, pk="id")
    db["releases"].create({"id": str, "lot": str, "tags": int, "kg": str, "not_before": str,
                           "not_after": str, "used": int}, pk="id")
    db["readers"].create({"name": str, "down_reason": str, "detail": str, "updated": float},
                         pk="name")
    db["alerts"].create({"key": str, "kind": str, "detail": str, "opened": float}, pk="key")
    db["climate"].create({"id": int, "temp_c": str, "rh_pct": str, "band": str,
                          "error": str, "updated": float}, pk="id")
    db["receipts"].create({"id": int, "lot": str, "purchases": str, "epcs": str, "kg": str,
                           "created": float, "done": int, "error": str}, pk="id")
    db["meta"].create({"key": str, "value": str}, pk="key")


def _m002(db: sqlite_utils.Database) -> None:
    # What the dashboard shows beside the terminal view: the seq of the event that opened each
    # alert (an acknowledgement names it), the monitors' acknowledgements of open alerts, and
    # a day of climate readings for its chart.
    db["alerts"].add_column("seq", int)
    db["acks"].create({"alert_key": str, "alert_seq": int, "seq": int, "staff": str,
                       "note": str, "at": float}, pk="seq")
    db["climate_log"].create({"at": float, "temp_c": str, "rh_pct": str}, pk="at")


MIGRATIONS = [("0001-warehouse", _m001), ("0002-dashboard", _m002)]
CLIMATE_KEPT_S = 24 * 3600


class WarehouseStore:
    def __init__(self, path: Path, *, readonly: bool = False):
        self.path = Path(path)
        if readonly:
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                        isolation_level=None, check_same_thread=False,
                                        timeout=10)
        else:
            self.conn = sqlite3.connect(self.path, isolation_level=None,
                                        check_same_thread=False, timeout=10)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            migrate(self.conn, MIGRATIONS)

    def close(self) -> None:
        self.conn.close()

    def _tx(self, statements: list[tuple[str, tuple]]) -> None:
        if not statements:
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                self.conn.execute(sql, args)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self.conn.execute(sql, args).fetchall()

    # -- tags -----------------------------------------------------------------------------

    def save_tags(self, tags: list[tuple[str, str, str, int]]) -> None:
        now = time.time()
        self._tx([("INSERT OR REPLACE INTO tags (epc, status, reader, antenna, updated) "
                   "VALUES (?, ?, ?, ?, ?)", (*t, now)) for t in tags])

    def forget_tags(self, epcs: list[str]) -> None:
        self._tx([("DELETE FROM tags WHERE epc = ?", (epc,)) for epc in epcs])

    def load_tags(self) -> list[tuple[str, str, str, int]]:
        return self.rows("SELECT epc, status, reader, antenna FROM tags")

    # -- custody --------------------------------------------------------------------------

    def save_custody(self, custody: Custody) -> None:
        stmts = [("INSERT OR REPLACE INTO lots VALUES (?, ?, ?, ?)",
                  (lot.id, json.dumps(list(lot.purchases)), json.dumps(sorted(lot.epcs)),
                   lot.kg)) for lot in custody.lots.values()]
        stmts += [("INSERT OR REPLACE INTO pledges VALUES (?, ?, ?, ?, ?, ?)",
                   (p.id, json.dumps(list(p.lots)), p.tags, p.kg, p.released_tags,
                    int(p.short))) for p in custody.pledges.values()]
        stmts += [("INSERT OR REPLACE INTO releases VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (r.id, r.lot, r.tags, r.kg, utc_timestamp(r.not_before),
                    utc_timestamp(r.not_after), r.used)) for r in custody.releases.values()]
        self._tx(stmts)

    def load_custody(self) -> Custody:
        lots = {r[0]: Lot(r[0], tuple(json.loads(r[1])), frozenset(json.loads(r[2])), r[3])
                for r in self.rows("SELECT lot, purchases, epcs, kg FROM lots")}
        pledges = {r[0]: Pledge(r[0], tuple(json.loads(r[1])), r[2], r[3], r[4], bool(r[5]))
                   for r in self.rows("SELECT id, lots, tags, kg, released_tags, short "
                                      "FROM pledges")}
        releases = {r[0]: Release(r[0], r[1], r[2], parse_utc_timestamp(r[4]),
                                  parse_utc_timestamp(r[5]), r[3], r[6])
                    for r in self.rows("SELECT id, lot, tags, kg, not_before, not_after, used "
                                       "FROM releases")}
        return Custody(lots, pledges, releases)

    # -- receipts inbox -------------------------------------------------------------------

    def add_receipt(self, lot: str, purchases: list[str], epcs: list[str],
                    kg: str | None) -> int:
        cur = self.conn.execute(
            "INSERT INTO receipts (lot, purchases, epcs, kg, created, done) "
            "VALUES (?, ?, ?, ?, ?, 0)",
            (lot, json.dumps(purchases), json.dumps(epcs), kg, time.time()))
        return cur.lastrowid

    def pending_receipts(self) -> list[tuple[int, str, list[str], list[str], str | None]]:
        return [(r[0], r[1], json.loads(r[2]), json.loads(r[3]), r[4]) for r in self.rows(
            "SELECT id, lot, purchases, epcs, kg FROM receipts WHERE done = 0 ORDER BY id")]

    def finish_receipt(self, receipt_id: int, error: str | None = None) -> None:
        self.conn.execute("UPDATE receipts SET done = 1, error = ? WHERE id = ?",
                          (error, receipt_id))

    def receipt(self, receipt_id: int) -> tuple[int, str | None] | None:
        rows = self.rows("SELECT done, error FROM receipts WHERE id = ?", (receipt_id,))
        return rows[0] if rows else None

    # -- what the terminal view shows -----------------------------------------------------

    def save_reader(self, name: str, down_reason: str, detail: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO readers VALUES (?, ?, ?, ?)",
                          (name, down_reason, detail, time.time()))

    def load_readers(self) -> list[tuple[str, str, str]]:
        return self.rows("SELECT name, down_reason, detail FROM readers ORDER BY name")

    def open_alert(self, key: str, kind: str, detail: str, seq: int | None = None) -> None:
        self.conn.execute("INSERT OR IGNORE INTO alerts (key, kind, detail, opened, seq) "
                          "VALUES (?, ?, ?, ?, ?)", (key, kind, detail, time.time(), seq))

    def close_alert(self, key: str) -> None:
        self._tx([("DELETE FROM alerts WHERE key = ?", (key,)),
                  ("DELETE FROM acks WHERE alert_key = ?", (key,))])

    def alert_rows(self) -> list[tuple[str, str, str, float, int | None]]:
        """Open alerts with the seq of the event that opened them (None: opened before this
        was kept)."""
        return self.rows("SELECT key, kind, detail, opened, seq FROM alerts "
                         "ORDER BY opened, key")

    def add_ack(self, alert_key: str, alert_seq: int, seq: int, staff: str, note: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO acks VALUES (?, ?, ?, ?, ?, ?)",
                          (alert_key, alert_seq, seq, staff, note, time.time()))

    def acks(self) -> list[tuple[str, int, int, str, str, float]]:
        """The acknowledgements of open alerts: (alert_key, alert_seq, seq, staff, note, at)."""
        return self.rows("SELECT alert_key, alert_seq, seq, staff, note, at FROM acks "
                         "ORDER BY seq")

    def open_alerts(self) -> list[tuple[str, str, str, float]]:
        return self.rows("SELECT key, kind, detail, opened FROM alerts ORDER BY opened, key")

    def save_climate(self, temp_c: str | None, rh_pct: str | None, band: str,
                     error: str | None) -> None:
        self.conn.execute("INSERT OR REPLACE INTO climate VALUES (1, ?, ?, ?, ?, ?)",
                          (temp_c, rh_pct, band, error, time.time()))

    def load_climate(self) -> tuple | None:
        rows = self.rows("SELECT temp_c, rh_pct, band, error, updated FROM climate")
        return rows[0] if rows else None

    def log_climate(self, temp_c: str, rh_pct: str, at: float | None = None) -> None:
        """One reading for the day's chart; readings older than a day are dropped."""
        at = time.time() if at is None else at
        self._tx([("INSERT OR REPLACE INTO climate_log VALUES (?, ?, ?)", (at, temp_c, rh_pct)),
                  ("DELETE FROM climate_log WHERE at < ?", (at - CLIMATE_KEPT_S,))])

    def climate_log(self, since: float) -> list[tuple[float, str, str]]:
        return self.rows("SELECT at, temp_c, rh_pct FROM climate_log WHERE at >= ? ORDER BY at",
                         (since,))

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def meta(self, key: str) -> str | None:
        rows = self.rows("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

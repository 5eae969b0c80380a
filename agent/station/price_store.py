"""The station's price tables on disk, and the handler of the `price_table.set` command.

Every table ever installed is kept (one JSON file, in install order), because a purchase record
names its table by id and version and must stay recomputable. A season only moves forward: a
table whose version is not above the season's highest is refused, so a replayed or reordered
command can never bring old prices back. The file is replaced atomically (temporary file,
fsync, rename, fsync of the directory): after a power cut the station has either the old set of
tables or the new one, never a partial file.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.contract.commands import Command
from agent.contract.durable import fsync_dir
from agent.contract.envelope import parse_json_object
from agent.contract.pricing.errors import PriceStoreError, TableVersionRefused, UnknownPriceTable
from agent.contract.pricing.tables import PriceTable, parse_price_table
from agent.errors import CocoonError

log = logging.getLogger(__name__)

FILE_NAME = "price_tables.json"
FILE_FORMAT = "cocoon-price-tables/1"
TEMP_PREFIX = ".price_tables."
TEMP_SUFFIX = ".tmp"


class PriceTableStore:
    """Installed price tables under `directory`; safe to share between threads."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / FILE_NAME
        self._lock = threading.Lock()
        self._remove_stale_temp_files()
        self._docs, self._tables = self._load()

    # -- reading ----------------------------------------------------------------------

    def tables(self) -> list[PriceTable]:
        with self._lock:
            return list(self._tables)

    def get(self, table_id: str, version: int) -> PriceTable:
        """The table with this id and version (to recompute an old record)."""
        with self._lock:
            for table in self._tables:
                if table.table_id == table_id and table.version == version:
                    return table
        raise UnknownPriceTable(f"no price table {table_id} v{version} on this station; the "
                                "backend must send it with price_table.set")

    def current(self, season: str) -> PriceTable:
        """The highest version installed for `season`, whatever its validity."""
        with self._lock:
            found = [t for t in self._tables if t.season == season]
        if not found:
            raise UnknownPriceTable(f"no price table for season {season} on this station")
        return max(found, key=lambda t: t.version)

    def in_force(self, when: datetime) -> PriceTable:
        """The table to price with at `when`.

        Per season, the highest version valid at `when` (so a table published ahead of its
        valid_from does not stop today's purchases); if several seasons have one, the one that
        came into force last.
        """
        with self._lock:
            valid = [t for t in self._tables if t.valid_at(when)]
        best: dict[str, PriceTable] = {}
        for table in valid:
            if table.season not in best or table.version > best[table.season].version:
                best[table.season] = table
        if not best:
            raise UnknownPriceTable(f"no price table is in force at {when.isoformat()}: the "
                                    "backend must send one before purchases can be priced")
        return max(best.values(), key=lambda t: (t.valid_from, t.season))

    # -- installing -------------------------------------------------------------------

    def install(self, doc: Any) -> dict:
        """Validate, check the version and store a table document; return a summary."""
        doc = copy.deepcopy(doc)  # store exactly what was checked, whatever the caller does later
        table = parse_price_table(doc)
        with self._lock:
            same_season = [t.version for t in self._tables if t.season == table.season]
            latest = max(same_season, default=None)
            if latest is not None and table.version <= latest:
                state = ("already installed" if table.version == latest
                         else f"older than the current version {latest}")
                raise TableVersionRefused(
                    f"price table version {table.version} for season {table.season} is {state}; "
                    "send a higher version to change prices")
            if any(t.table_id == table.table_id and t.version == table.version
                   for t in self._tables):
                raise TableVersionRefused(
                    f"price table {table.table_id} v{table.version} exists in another season; "
                    "an id and version must name one table")
            docs = [*self._docs, doc]
            try:
                self._write({"format": FILE_FORMAT, "tables": docs})
            except OSError as exc:
                raise PriceStoreError(f"{self.path}: cannot store the price table ({exc}); the "
                                      "previous tables stay in force") from None
            self._docs, self._tables = docs, [*self._tables, table]
        log.info("price table installed: %s v%d season=%s digest=%s", table.table_id,
                 table.version, table.season, table.digest)
        return {"table": table.table_id, "version": table.version, "season": table.season,
                "digest": table.digest, "previous_version": latest}

    # -- the file ---------------------------------------------------------------------

    def _load(self) -> tuple[list[dict], list[PriceTable]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], []
        except OSError as exc:
            raise PriceStoreError(f"{self.path}: cannot read the price tables: {exc}") from None
        try:
            obj = parse_json_object(data, str(self.path))
            if obj.get("format") != FILE_FORMAT or not isinstance(obj.get("tables"), list):
                raise PriceStoreError(f"{self.path}: not a {FILE_FORMAT} file")
            tables = [parse_price_table(doc) for doc in obj["tables"]]
        except CocoonError as exc:
            raise PriceStoreError(f"{self.path} is unreadable ({exc}); move it aside and have "
                                  "the backend send the price tables again") from None
        return obj["tables"], tables

    def _write(self, obj: dict) -> None:
        data = json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        fsync_dir(self.directory)

    def _remove_stale_temp_files(self) -> None:
        for stale in self.directory.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
            log.warning("removing %s, left by an interrupted price table update", stale.name)
            stale.unlink(missing_ok=True)


def make_price_table_handler(store: PriceTableStore) -> Callable[[Command], dict]:
    """The `price_table.set` handler for the Dispatcher.

    The dispatcher has already checked the backend's signature, the addressing, the expiry and
    replay; the handler validates the table (the command body), refuses a version that does not
    advance its season, stores it, and returns the summary that `command.done` carries. Errors
    are PricingError subclasses, which the dispatcher reports in `command.failed`.
    """

    def handle(cmd: Command) -> dict:
        return store.install(cmd.body)

    return handle

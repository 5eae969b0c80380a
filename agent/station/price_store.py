"""The station's price tables on disk, and the handler of the `price_table.set` command.

Every table ever installed is kept (one JSON file, in install order), because a purchase record
names its table by id and version and must stay recomputable. A season only moves forward: a
table whose version is not above the season's highest is refused, so a replayed or reordered
command can never bring old prices back. The file is replaced atomically (temporary file,
fsync, rename, fsync of the directory): after a power cut the station has either the old set of
tables or the new one, never a partial file.

Tables are guarded at every use (WELMEC 7.2: legally relevant data protected against change).
What is stored is each table's whole signed `price_table.set` command, as the backend signed
it; each time the tables are read (at start, and before each sale prices with them) the file is
read again and every command's signature is verified over the stored bytes with the backend's
key. A table edited on disk, or one stored by an earlier release without its signature, fails:
the station refuses to price (`PriceTableRefused`, reported once as a `price_table.refused`
alert) until the backend sends its tables again, and the next table installed leaves the
failing ones out (the file they were in is kept aside, as evidence).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.contract.commands import Command
from agent.contract.durable import fsync_dir
from agent.contract.envelope import parse_json_object, verify_object
from agent.contract.errors import SignatureError
from agent.contract.pricing.errors import PriceStoreError, TableVersionRefused, UnknownPriceTable
from agent.contract.pricing.tables import PriceTable, parse_price_table
from agent.errors import CocoonError

log = logging.getLogger(__name__)

FILE_NAME = "price_tables.json"
FILE_FORMAT = "cocoon-price-tables/2"       # the signed commands
LEGACY_FORMAT = "cocoon-price-tables/1"     # the bare table documents (no signature)
TEMP_PREFIX = ".price_tables."
TEMP_SUFFIX = ".tmp"


class PriceTableRefused(PriceStoreError):
    """A stored price table failed its check at use: the station cannot price with it."""


class PriceTableStore:
    """Installed price tables under `directory`, each verified with the backend's key
    (`verifier`) as the signed command to `device` that brought it; safe to share between
    threads. Without a verifier (no backend key configured) no table can be trusted."""

    def __init__(self, directory: str | Path, verifier, device: str):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / FILE_NAME
        self.verifier = verifier
        self.device = device
        self._lock = threading.Lock()
        self._remove_stale_temp_files()
        self._commands: list[dict] = []
        self._tables: list[PriceTable] = []
        #: Why the stored tables are refused ("" while they verify).
        self.problem = ""
        try:
            self._guarded()
        except PriceTableRefused as exc:
            log.error("%s", exc)

    # -- reading ----------------------------------------------------------------------

    def tables(self) -> list[PriceTable]:
        """The installed tables, read and verified again now; PriceTableRefused if any
        fails."""
        return self._guarded()

    def get(self, table_id: str, version: int) -> PriceTable:
        """The table with this id and version (to recompute an old record)."""
        for table in self._guarded():
            if table.table_id == table_id and table.version == version:
                return table
        raise UnknownPriceTable(f"no price table {table_id} v{version} on this station; the "
                                "backend must send it with price_table.set")

    def current(self, season: str) -> PriceTable:
        """The highest version installed for `season`, whatever its validity."""
        found = [t for t in self._guarded() if t.season == season]
        if not found:
            raise UnknownPriceTable(f"no price table for season {season} on this station")
        return max(found, key=lambda t: t.version)

    def in_force(self, when: datetime) -> PriceTable:
        """The table to price with at `when`.

        Per season, the highest version valid at `when` (so a table published ahead of its
        valid_from does not stop today's purchases); if several seasons have one, the one that
        came into force last. The tables are read and verified again first.
        """
        valid = [t for t in self._guarded() if t.valid_at(when)]
        best: dict[str, PriceTable] = {}
        for table in valid:
            if table.season not in best or table.version > best[table.season].version:
                best[table.season] = table
        if not best:
            raise UnknownPriceTable(f"no price table is in force at {when.isoformat()}: the "
                                    "backend must send one before purchases can be priced")
        return max(best.values(), key=lambda t: (t.valid_from, t.season))

    # -- installing -------------------------------------------------------------------

    def install(self, signed: Any) -> dict:
        """Verify, validate, check the version and store a signed `price_table.set` command
        (its body is the table document); return a summary."""
        signed = copy.deepcopy(signed)  # store exactly what was checked
        table = self._verified(signed, "the command")
        with self._lock:
            try:
                self._commands, self._tables = self._load()
            except PriceTableRefused as exc:
                self._set_aside(exc)
                self._commands, self._tables = self._load(skip_refused=True)
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
            commands = [*self._commands, signed]
            try:
                self._write({"format": FILE_FORMAT, "tables": commands})
            except OSError as exc:
                raise PriceStoreError(f"{self.path}: cannot store the price table ({exc}); the "
                                      "previous tables stay in force") from None
            self._commands, self._tables = commands, [*self._tables, table]
            self.problem = ""
        log.info("price table installed: %s v%d season=%s digest=%s", table.table_id,
                 table.version, table.season, table.digest)
        return {"table": table.table_id, "version": table.version, "season": table.season,
                "digest": table.digest, "previous_version": latest}

    # -- the file ---------------------------------------------------------------------

    def _guarded(self) -> list[PriceTable]:
        """Read the file again and verify every table in it; PriceTableRefused if one fails."""
        with self._lock:
            try:
                self._commands, self._tables = self._load()
            except PriceTableRefused as exc:
                self.problem = str(exc)
                self._commands, self._tables = [], []
                raise
            self.problem = ""
            return list(self._tables)

    def _load(self, *, skip_refused: bool = False) -> tuple[list[dict], list[PriceTable]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], []
        except OSError as exc:
            raise PriceTableRefused(f"{self.path}: cannot read the price tables ({exc}); the "
                                    "station cannot price") from None
        try:
            obj = parse_json_object(data, str(self.path))
        except CocoonError as exc:
            raise PriceTableRefused(f"{self.path} is unreadable ({exc}): the station cannot "
                                    "price until the backend sends its price tables again") \
                from None
        if obj.get("format") == LEGACY_FORMAT:
            if skip_refused:
                return [], []
            raise PriceTableRefused(
                f"{self.path} holds price tables stored by an earlier release, without their "
                "signature: the station cannot price until the backend sends its price tables "
                "again (price_table.set)")
        if obj.get("format") != FILE_FORMAT or not isinstance(obj.get("tables"), list):
            raise PriceTableRefused(f"{self.path}: not a {FILE_FORMAT} file; the station "
                                    "cannot price until the backend sends its tables again")
        commands, tables = [], []
        for i, signed in enumerate(obj["tables"]):
            what = f"stored table {i + 1} of {self.path}"
            try:
                tables.append(self._verified(signed, what))
            except PriceTableRefused:
                if skip_refused:
                    continue
                raise
            except CocoonError as exc:
                if skip_refused:
                    continue
                raise PriceTableRefused(f"{what} is not a valid price table ({exc}): the "
                                        "station cannot price until the backend sends its "
                                        "tables again") from None
            commands.append(signed)
        return commands, tables

    def _verified(self, signed: Any, what: str) -> PriceTable:
        """The table a signed price_table.set command carries, verified with the backend's
        key over the bytes as they are now."""
        if self.verifier is None:
            raise PriceTableRefused("no backend public key is configured ([keys]): no price "
                                    "table can be checked, so the station cannot price")
        if not isinstance(signed, dict) or signed.get("type") != "price_table.set":
            raise PriceTableRefused(f"{what} is not a signed price_table.set command")
        body = signed.get("body")
        name = (f"price table {body.get('id')} v{body.get('version')}"
                if isinstance(body, dict) else what)
        if signed.get("device") != self.device:
            raise PriceTableRefused(f"{name} ({what}) was signed for device "
                                    f"{signed.get('device')!r}, not {self.device!r}")
        try:
            verify_object(signed, self.verifier, alg=self.verifier.alg)
        except SignatureError as exc:
            raise PriceTableRefused(
                f"{name} ({what}) fails its signature check ({exc}): it was altered after the "
                "backend signed it. The station cannot price until the backend sends its price "
                "tables again") from None
        return parse_price_table(body)

    def _set_aside(self, why: Exception) -> None:
        """Keep a copy of a refused file as evidence before the next install leaves its
        failing tables out."""
        aside = self.path.with_name(f"{FILE_NAME}.refused-{int(time.time())}")
        try:
            shutil.copyfile(self.path, aside)
            fsync_dir(self.directory)
        except OSError as exc:
            log.error("cannot keep a copy of %s: %s", self.path, exc)
            return
        log.error("refused price tables kept as %s (%s)", aside.name, why)

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
        if cmd.signed is None:
            raise PriceStoreError("price_table.set reached the store without its signature")
        return store.install(cmd.signed)

    return handle

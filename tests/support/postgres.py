"""A real PostgreSQL for the ingest's store tests: Debian's PostgreSQL 15, one server per test
session in a temporary directory, on a free loopback port with a private socket directory, and
a fresh database per test.

PostgreSQL refuses to run as root: as root (CI), the server runs as the `postgres` user the
package creates (`runuser -u postgres --`), in a directory that user owns; as anyone else it runs
as that user. Where PostgreSQL (or psycopg) is missing its tests are skipped, unless
COCOON_REQUIRE_PARTS=1 (CI sets it), which makes them fail instead. COCOON_PG_BIN names another
directory of PostgreSQL's programs than Debian's 15.

The server runs with fsync off: these tests check the ingest's rules, not the disk, and a
database per test is created in milliseconds that way.

Fixtures (a pytest plugin, named in tests/conftest.py):
- `postgres`: the session's server (`PostgresServer`);
- `postgres_url`: a fresh, empty database for one test, dropped after it;
- `ingest_store_location`: parametrized over "sqlite" and "postgresql": a SQLite path or a
  fresh database's url, for `IngestStore(...)`;
- `site_store`: parametrized likewise, puts the `site` fixture's ingest on either store.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

BIN = Path(os.environ.get("COCOON_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVER_USER = "postgres"


def required() -> bool:
    return os.environ.get("COCOON_REQUIRE_PARTS") == "1"


def missing() -> str | None:
    """Why no server can be started here, or None."""
    for tool in ("initdb", "pg_ctl"):
        if not (BIN / tool).is_file():
            return f"PostgreSQL is not installed ({BIN / tool} is missing; apt-get install " \
                   "postgresql)"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "runuser is missing"
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"there is no {SERVER_USER!r} user to run PostgreSQL as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory; `start()`, `database()`, `stop()`."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="cocoon-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "server.log"
        self.port = 0
        self.started = False
        self._names = itertools.count(1)
        self._admin = None

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, cwd=self.root)

    def _check(self, done: subprocess.CompletedProcess, what: str) -> None:
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"PostgreSQL {what} failed ({done.returncode}):\n"
                               f"{done.stdout}{done.stderr}\n{log}")

    def start(self) -> PostgresServer:
        self.sockets.mkdir()
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            for path in (self.root, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._check(self._run(str(BIN / "initdb"), "-D", str(self.data), "-A", "trust",
                              "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"),
                    "initdb")
        for attempt in range(3):
            self.port = free_port()
            options = (f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                       "-c max_connections=60 -c shared_buffers=32MB")
            done = self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-o", options,
                             "-l", str(self.log), "-w", "-t", "60", "start")
            if done.returncode == 0:
                break
            if attempt == 2:
                self._check(done, "start")
        self.started = True
        import psycopg

        self._admin = psycopg.connect(self.url("postgres"), autocommit=True)
        return self

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """Create an empty database; its name."""
        name = f"test_{next(self._names)}"
        self._admin.execute(f"CREATE DATABASE {name}")
        return name

    def admin(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Run `sql` as the server's superuser, on its `postgres` database."""
        cur = self._admin.execute(sql, args or None)
        return cur.fetchall() if cur.description else []

    def drop(self, name: str) -> None:
        self._admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self.started:
            self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    why = missing()
    if why:
        if required():
            pytest.fail(f"COCOON_REQUIRE_PARTS=1 and {why}", pytrace=False)
        pytest.skip(why)
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres):
    name = postgres.database()
    try:
        yield postgres.url(name)
    finally:
        postgres.drop(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def ingest_store_location(request, tmp_path):
    """Where an IngestStore lives: a SQLite file, or a fresh PostgreSQL database's url."""
    if request.param == "sqlite":
        return tmp_path / "ingest.sqlite"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(params=["sqlite", "postgresql"])
def site_store(request, site):
    """The `site` fixture's ingest on its SQLite file, or on a fresh PostgreSQL database
    ([store] url added to its configuration); the name of the store."""
    if request.param == "postgresql":
        from tests.support.running import use_store_url

        use_store_url(site, request.getfixturevalue("postgres_url"))
    return request.param

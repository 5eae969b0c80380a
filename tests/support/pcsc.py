"""A private pcscd for the test session, with virtual readers (vpcd) on free ports.

The card drivers are tested through the real PC/SC stack: this pcscd, Debian's vpcd reader
driver, libpcsclite and pyscard, with cards written in Python (tests/support/vcard.py). It
never touches the machine's own pcscd: it has its own socket, its own reader.conf directory
and its own TCP ports, and it is started through systemd-socket-activate so that no system
service is involved.

Register this module as a pytest plugin (one line in tests/conftest.py):

    pytest_plugins = ["tests.support.pcsc"]

Why a plugin: libpcsclite reads `PCSCLITE_CSOCK_NAME` once per process, at the first PC/SC
call, and keeps that socket path for good. `pytest_configure` below sets it before any test
module is imported, so no test can reach another pcscd. Nothing in tests/support imports
pyscard at module level for the same reason.

Fixtures:
- `pcscd`: the session's `Pcscd`, running with all its readers when the test starts (a test
  may stop, restart or reconfigure it; the next test gets it back as it was).
- `virtual_card`: `virtual_card(reader=None, *, respond=None, atr=None, cls=VirtualCard)`
  makes a card (not inserted) for a reader (a `VirtualReader`, a part of its name, or the
  first one); cards still inserted at the end of the test are removed.

Notes on the parts: pcscd execs only at the first client connection, and the vpcd driver
opens its ports only then. One reader.conf entry gives two readers, "NAME 00 00" on the
entry's port and "NAME 00 01" on the next. pcscd lists readers in directory order, so tests
select them by name. pcscd writes (and at exit removes) /run/pcscd/pcscd.pid even when
socket-activated.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.vpcd.card import VirtualCard, VirtualReader
from drivers.vpcd.pcscd import FRIENDLY_NAME, SOCKET_ENV, VPCD_SLOTS, Pcscd  # noqa: F401

_ROOT = pytest.StashKey[Path]()
_OLD_SOCKET = pytest.StashKey[str | None]()


def pytest_configure(config: pytest.Config) -> None:
    if "smartcard" in sys.modules:
        raise pytest.UsageError(
            "pyscard was imported before tests.support.pcsc could set PCSCLITE_CSOCK_NAME: "
            "load the plugin first (pytest_plugins in tests/conftest.py) and keep pyscard out "
            "of conftest-level imports")
    root = Path(tempfile.mkdtemp(prefix="cocoon-pcscd-"))
    config.stash[_ROOT] = root
    config.stash[_OLD_SOCKET] = os.environ.get(SOCKET_ENV)
    os.environ[SOCKET_ENV] = str(root / "pcscd.comm")


def pytest_unconfigure(config: pytest.Config) -> None:
    root = config.stash.get(_ROOT, None)
    if root is None:
        return
    old = config.stash[_OLD_SOCKET]
    if old is None:
        os.environ.pop(SOCKET_ENV, None)
    else:
        os.environ[SOCKET_ENV] = old
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pcscd_session(pytestconfig: pytest.Config) -> Iterator[Pcscd]:
    """The session's pcscd: started once, stopped at the end of the session."""
    daemon = Pcscd(pytestconfig.stash[_ROOT], Path(os.environ[SOCKET_ENV]))
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def pcscd(pcscd_session: Pcscd) -> Pcscd:
    """The session's pcscd, running with all its readers (restarted if a test left it not)."""
    if not pcscd_session.complete:
        pcscd_session.restart()
    return pcscd_session


@pytest.fixture
def virtual_card(pcscd: Pcscd):
    """Factory of virtual cards for the session's readers; leftovers are removed at teardown."""
    made: list[VirtualCard] = []

    def make(reader: VirtualReader | str | None = None, *, cls: type[VirtualCard] = VirtualCard,
             **kwargs) -> VirtualCard:
        if not isinstance(reader, VirtualReader):
            reader = pcscd.reader(reader or "")
        card = cls(reader, **kwargs)
        made.append(card)
        return card

    yield make
    for card in made:
        if card.inserted:
            card.remove(wait=pcscd.running)

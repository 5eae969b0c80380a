"""A private pcscd with vpcd virtual readers, for the tests and the demo station.

It never touches the machine's own pcscd: it has its own socket, its own reader.conf directory
and its own TCP ports, and it is started through systemd-socket-activate so that no system
service is involved. A client finds it through the standard `PCSCLITE_CSOCK_NAME` variable,
which libpcsclite reads once per process, at its first PC/SC call: set it before anything
talks PC/SC.

Notes on the parts: pcscd execs only at the first client connection, and the vpcd driver opens
its ports only then. One reader.conf entry gives two readers, "NAME 00 00" on the entry's port
and "NAME 00 01" on the next. pcscd lists readers in directory order, so callers select them by
name. pcscd writes (and at exit removes) /run/pcscd/pcscd.pid even when socket-activated.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from .card import VirtualReader

SOCKET_ENV = "PCSCLITE_CSOCK_NAME"
FRIENDLY_NAME = "Virtual PCD"
VPCD_SLOTS = 2      # readers per reader.conf entry in Debian's vpcd build: port, port + 1
_SBIN = os.pathsep.join(("/usr/sbin", "/sbin"))


def _tool(name: str, package: str) -> str:
    path = shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + _SBIN)
    if path is None:
        raise RuntimeError(f"{name} not found: install the Debian package {package} "
                           "(scripts/bootstrap does)")
    return path


def vpcd_driver() -> Path:
    """The vpcd driver library, from the files of the vsmartcard-vpcd package."""
    try:
        files = subprocess.run(["dpkg", "-L", "vsmartcard-vpcd"], capture_output=True,
                               text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError("the vpcd reader driver is missing: install the Debian package "
                           "vsmartcard-vpcd (scripts/bootstrap does)") from exc
    libraries = sorted((f for f in files if Path(f).name.startswith("libifdvpcd.so")), key=len)
    if not libraries:
        raise RuntimeError("vsmartcard-vpcd is installed but has no libifdvpcd.so")
    return Path(libraries[0])       # the shortest: the unversioned name if there is one


def _free_ports(count: int) -> int:
    """A base port with `count` consecutive ports free on every address (vpcd binds them all).

    Drawn below the kernel's ephemeral range, so that no outgoing connection can take one
    between this check and pcscd's bind."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, max(20001, low - count))
        probes: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                probes.append(probe)
                probe.bind(("0.0.0.0", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no {count} consecutive free TCP ports found")


class Pcscd:
    """One pcscd with `entries` vpcd reader.conf entries (each gives VPCD_SLOTS readers).

    Ports are chosen once, so a `VirtualReader` stays valid across `restart()`."""

    def __init__(self, root: Path, socket_path: Path, entries: Iterable[str] = (FRIENDLY_NAME,)):
        self.root = Path(root)
        self.socket_path = Path(socket_path)
        self.conf_dir = self.root / "reader.conf.d"
        self.log_path = self.root / "pcscd.log"
        self.ports = {name: _free_ports(VPCD_SLOTS) for name in entries}
        self.enabled: tuple[str, ...] = tuple(self.ports)
        self.readers: tuple[VirtualReader, ...] = ()
        self._proc: subprocess.Popen | None = None
        self._driver = vpcd_driver()
        self._pcscd = _tool("pcscd", "pcscd")
        self._activate = _tool("systemd-socket-activate", "systemd")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def complete(self) -> bool:
        """Running with every entry enabled (as the fixture hands it to a test)."""
        return self.running and self.enabled == tuple(self.ports)

    def _write_config(self) -> None:
        shutil.rmtree(self.conf_dir, ignore_errors=True)
        self.conf_dir.mkdir(parents=True)
        for index, name in enumerate(self.enabled):
            (self.conf_dir / f"{index:02d}-vpcd").write_text(
                f'FRIENDLYNAME "{name}"\n'
                f"DEVICENAME /dev/null:0x{self.ports[name]:04X}\n"
                f"LIBPATH {self._driver}\n", encoding="utf-8")

    def start(self, *, only: Iterable[str] | None = None, timeout: float = 10.0) -> None:
        """Start pcscd with the entries in `only` (default: all); return once its readers are
        listed."""
        if self.running:
            raise RuntimeError("pcscd is already running")
        self.enabled = tuple(self.ports) if only is None else tuple(only)
        self._write_config()
        self.socket_path.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [self._activate, "-l", str(self.socket_path), self._pcscd, "--foreground",
                 "--config", str(self.conf_dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)     # a terminal's Ctrl-C is for its owner; stop() ends it
        try:
            self.readers = self._wait_for_readers(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait; every virtual card loses its connection."""
        proc, self._proc = self._proc, None
        self.readers = ()
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"pcscd ignored SIGTERM for {timeout} s; killed") from None

    def restart(self, *, only: Iterable[str] | None = None) -> None:
        self.stop()
        self.start(only=only)

    def reader(self, part: str = "") -> VirtualReader:
        """The reader whose name contains `part` (the first reader for "")."""
        if not part:
            return self.readers[0]
        matches = [r for r in self.readers if part in r.name]
        if len(matches) != 1:
            raise RuntimeError(f"{len(matches)} readers match {part!r}: "
                                 f"{[r.name for r in self.readers]}")
        return matches[0]

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _wait_for_readers(self, timeout: float) -> tuple[VirtualReader, ...]:
        """Connect (which makes systemd-socket-activate exec pcscd) until every enabled entry's
        readers are listed; map each to its port by its slot number."""
        from smartcard import scard

        deadline = time.monotonic() + timeout
        names: list[str] = []
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"pcscd exited at start:\n{self.log_tail()}")
            code, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if code == scard.SCARD_S_SUCCESS:
                code, names = scard.SCardListReaders(context, [])
                scard.SCardReleaseContext(context)
                readers = self._match(names if code == scard.SCARD_S_SUCCESS else [])
                if readers is not None:
                    return readers
            if time.monotonic() >= deadline:
                raise RuntimeError(f"pcscd did not list the virtual readers within "
                                     f"{timeout} s (listed: {names}):\n{self.log_tail()}")
            time.sleep(0.01)

    def _match(self, names: list[str]) -> tuple[VirtualReader, ...] | None:
        readers = []
        for entry in self.enabled:
            mine = [n for n in names if n.startswith(entry + " ")]
            if len(mine) < VPCD_SLOTS:
                return None
            for name in mine:
                slot = int(name.rsplit(" ", 1)[1], 16)
                readers.append(VirtualReader(name, self.ports[entry] + slot))
        return tuple(readers)

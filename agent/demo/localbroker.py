"""Run a real local Mosquitto broker for the demo and the tests.

The broker listens on loopback only, requires TLS client certificates and
uses the certificate CN as the MQTT username, exactly like the bank-side
deployment the agent talks to.  This is a development helper, not a way to
operate a production broker.
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Union

__all__ = ["DEFAULT_ACL", "LocalBroker", "LocalBrokerError", "find_mosquitto"]

StrPath = Union[str, "os.PathLike[str]"]

# Access control, keyed on the username (= certificate CN).
#
# Shared subscriptions, as verified against Mosquitto 2.0.11 (see
# tests/test_localbroker.py): the acl_file checker never refuses a SUBSCRIBE
# at all -- its source says `if(access == MOSQ_ACL_SUBSCRIBE) return
# MOSQ_ERR_SUCCESS; /* FIXME - implement ACL subscription strings. */` -- so
# `$share/ingest/cocoon/v1/+/events` (like any other filter, by anyone) gets
# SUBACK "granted QoS 1".  Read rights are enforced per message at delivery
# time, against the real topic name (`cocoon/v1/<id>/events`), never against
# the `$share/<group>/...` filter.  Hence:
#   * `topic read cocoon/v1/+/events` is what lets `ingest` receive through
#     the shared subscription;
#   * a `topic read $share/+/cocoon/v1/+/events` line is inert (with only that
#     line, the subscription is granted and nothing is delivered), so it is
#     left out;
#   * a device subscribing to another device's topic is NOT refused at
#     SUBSCRIBE time; it simply never receives anything there.
DEFAULT_ACL = """\
pattern write cocoon/v1/%u/events
pattern read cocoon/v1/%u/acks
pattern read cocoon/v1/%u/commands
pattern write cocoon/v1/%u/renew
pattern read cocoon/v1/%u/renewed
user ingest
topic read cocoon/v1/+/events
topic readwrite cocoon/v1/+/acks
user operator
topic write cocoon/v1/+/commands
user claim
topic write cocoon/v1/enrol/request
topic read cocoon/v1/enrol/reply/+
user enrol
topic read cocoon/v1/enrol/request
topic write cocoon/v1/enrol/reply/+
topic read cocoon/v1/+/renew
topic write cocoon/v1/+/renewed
"""

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0
_POLL_INTERVAL = 0.02


class LocalBrokerError(RuntimeError):
    """Mosquitto is missing, failed to start, or misbehaved."""


def find_mosquitto() -> str:
    """Return the path of the ``mosquitto`` binary or raise LocalBrokerError."""
    found = shutil.which("mosquitto")
    if found:
        return found
    fallback = Path("/usr/sbin/mosquitto")
    if fallback.is_file() and os.access(fallback, os.X_OK):
        return str(fallback)
    raise LocalBrokerError(
        "mosquitto binary not found (looked in PATH and /usr/sbin); "
        "install it, e.g. `sudo apt-get install mosquitto`"
    )


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_is_bindable(host: str, port: int) -> bool:
    # SO_REUSEADDR like Mosquitto does, so a TIME_WAIT left by a previous
    # run of ours does not count as "in use", but a live listener does.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _accepts_tcp(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _conf_path(p: Path) -> str:
    s = str(p)
    if "\n" in s or "\r" in s:
        raise LocalBrokerError(f"path not usable in mosquitto.conf: {s!r}")
    return s


class LocalBroker:
    """A Mosquitto process bound to ``host:port`` with mutual-TLS auth.

    ``start()`` picks a free loopback port on first use (unless one was
    given) and keeps it across ``stop()``/``start()`` cycles, so a test can
    take the broker down and bring it back where clients expect it.
    """

    def __init__(
        self,
        workdir: Path,
        ca_file: StrPath,
        cert_file: StrPath,
        key_file: StrPath,
        *,
        acl: str = DEFAULT_ACL,
        port: int | None = None,
        host: str = "127.0.0.1",
        crl_file: StrPath | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        # Revoked client certificates (a PEM CRL from the device CA), read at each start.
        self.crl_file = Path(crl_file) if crl_file is not None else None
        self.ca_file = Path(ca_file)
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self.acl = acl
        self._port = port
        self._host = host
        self._proc: subprocess.Popen | None = None
        self._stderr: IO[bytes] | None = None
        self.conf_file = self.workdir / "mosquitto.conf"
        self.acl_file = self.workdir / "mosquitto.acl"
        self.log_file = self.workdir / "mosquitto.log"
        self.stderr_file = self.workdir / "mosquitto.stderr"

    # -- properties ---------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int | None:
        """The listening port; None until the first start() if none was given."""
        return self._port

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> LocalBroker:
        if self.is_running:
            return self
        self._reap()
        binary = find_mosquitto()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._port is None:
            self._port = _free_port(self._host)
        elif not _port_is_bindable(self._host, self._port):
            raise LocalBrokerError(f"{self._host}:{self._port} is already in use")
        self._write_config()

        self._stderr = open(self.stderr_file, "ab")  # noqa: SIM115 - lives as long as the broker
        self._proc = subprocess.Popen(
            [binary, "-c", str(self.conf_file)],
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=subprocess.STDOUT,
            close_fds=True,
            start_new_session=True,     # a terminal's Ctrl-C is for its owner; stop() ends it
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                self._reap()
                raise LocalBrokerError(
                    f"mosquitto exited during startup (exit code {rc})\n{self.log_tail()}"
                )
            if _accepts_tcp(self._host, self._port):
                if self._proc.poll() is None:
                    return self
                continue  # exited meanwhile: report it above
            if time.monotonic() >= deadline:
                self.stop()
                raise LocalBrokerError(
                    f"mosquitto did not accept connections on {self._host}:{self._port} "
                    f"within {_START_TIMEOUT:.0f}s\n{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=_STOP_TIMEOUT)
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None
        if self._proc is None and self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- helpers ------------------------------------------------------------

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of the broker log and of its stdout/stderr."""
        parts = []
        for path in (self.log_file, self.stderr_file):
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            tail = text.splitlines()[-lines:]
            if tail:
                parts.append(f"--- {path.name} ---\n" + "\n".join(tail))
        return "\n".join(parts) if parts else "(no mosquitto output)"

    def _write_config(self) -> None:
        self.acl_file.write_text(self.acl if self.acl.endswith("\n") else self.acl + "\n")
        user = pwd.getpwuid(os.geteuid()).pw_name
        conf = f"""\
# Generated by agent.demo.localbroker -- local development broker.
per_listener_settings true
persistence false
log_dest file {_conf_path(self.log_file.resolve())}
log_type error
log_type warning
log_type notice
log_type information
log_type subscribe
connection_messages true
# Mosquitto started as root would otherwise drop to the `mosquitto` user and
# then be unable to read files in a private (0700) temporary directory.
user {user}

listener {self._port} {self._host}
protocol mqtt
cafile {_conf_path(self.ca_file.resolve())}
certfile {_conf_path(self.cert_file.resolve())}
keyfile {_conf_path(self.key_file.resolve())}
require_certificate true
use_identity_as_username true
allow_anonymous false
acl_file {_conf_path(self.acl_file.resolve())}
"""
        if self.crl_file is not None and self.crl_file.exists():
            conf += f"crlfile {_conf_path(self.crl_file.resolve())}\n"
        self.conf_file.write_text(conf)

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<LocalBroker {self._host}:{self._port} {state}>"

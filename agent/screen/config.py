"""The `[screen]` section: where the clerk's screen listens and in which language it speaks.

    [screen]
    listen = "127.0.0.1"   # loopback only, unless remote screens are served (see below)
    port = 8480            # 0: any free port (tests)
    language = "zh-CN"     # or "en"

The station's own touchscreen (the kiosk) reaches the screen on 127.0.0.1:`port`, always over
plain HTTP on loopback. A `listen` that is not a loopback address also serves the screen to
other devices of the station's network (a tablet at the bench, the cooperative's office), and
only over TLS, on `tls_port`, behind a login by the per-device password a technician sets
(`cocoon-agent screen password`, never a default):

    listen = "0.0.0.0"                      # or the one address to serve on
    tls_port = 8443
    names = ["station-07.local", "192.168.1.20"]   # how the other devices reach the station

`names` are the host names and addresses the browsers use: a request naming another host is
refused (DNS rebinding), and `cocoon-agent screen certificate` puts them in the certificate.
A `listen` of one address is its own name when `names` is not given.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from agent.contract.settings import Schema, decode, integer, one_of, strings, text
from agent.errors import ConfigError

LANGUAGES = ("zh-CN", "en")
DEFAULT_PORT = 8480
DEFAULT_TLS_PORT = 8443
LOOPBACK = "127.0.0.1"
HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")


@dataclass(frozen=True)
class ScreenConfig:
    listen: str
    port: int
    language: str
    names: tuple[str, ...] = ()        # remote screens: how the other devices reach it
    tls_port: int = DEFAULT_TLS_PORT

    @property
    def remote(self) -> bool:
        """Served to other devices too (over TLS, behind the login)."""
        return not is_loopback(self.listen)

    @property
    def local_host(self) -> str:
        """Where the plain-HTTP screen for the station's own kiosk listens."""
        return LOOPBACK if self.remote else self.listen


class ScreenSection(Schema, kw_only=True):
    listen: text() = LOOPBACK
    port: integer(0, 65535) = DEFAULT_PORT
    language: one_of(*LANGUAGES) = "zh-CN"
    names: strings("a list of host names or addresses") = ()
    tls_port: integer(0, 65535) = DEFAULT_TLS_PORT


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def parse_screen(path: Path, table) -> ScreenConfig:
    sc = decode(path, "screen", table, ScreenSection)
    names = tuple(n.strip().lower() for n in sc.names)
    if not all(_is_address(n) or HOST_NAME.fullmatch(n) for n in names):
        raise ConfigError(f"{path}: [screen] names = {list(sc.names)!r}: host names or "
                          "addresses, such as \"station-07.local\" or \"192.168.1.20\"")
    if not is_loopback(sc.listen):
        if not is_wildcard(sc.listen) and not _is_address(sc.listen):
            raise ConfigError(f"{path}: [screen] listen = {sc.listen!r}: an address of this "
                              "device (\"0.0.0.0\" for all of them), or \"127.0.0.1\"")
        if not names:
            if is_wildcard(sc.listen):
                raise ConfigError(
                    f"{path}: [screen] listen = {sc.listen!r} serves the screen to the network: "
                    "say by which names or addresses the other devices reach this station, "
                    "e.g. names = [\"station-07.local\", \"192.168.1.20\"]")
            names = (sc.listen,)
        if sc.tls_port == sc.port and sc.port != 0:
            raise ConfigError(f"{path}: [screen] tls_port = {sc.tls_port} is also `port`: the "
                              "remote screens' TLS port must be another one (8443)")
    return ScreenConfig(sc.listen, sc.port, sc.language, names, sc.tls_port)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True

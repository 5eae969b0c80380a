"""The `[screen]` section: where the clerk's screen listens and in which language it speaks.

    [screen]
    listen = "127.0.0.1"   # loopback only, unless remote screens are served (see below)
    port = 8480            # 0: any free port (tests)
    language = "zh-CN"     # or "en"

A screen on another address would let anyone on the network act at the bench: that needs TLS
and a login (a staff card with a PIN, or a per-device password set at provisioning). This
release serves neither, so a `listen` that is not a loopback address is refused at start.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from agent.contract.settings import Schema, decode, integer, one_of, text
from agent.errors import ConfigError

LANGUAGES = ("zh-CN", "en")
DEFAULT_PORT = 8480


@dataclass(frozen=True)
class ScreenConfig:
    listen: str
    port: int
    language: str


class ScreenSection(Schema, kw_only=True):
    listen: text() = "127.0.0.1"
    port: integer(0, 65535) = DEFAULT_PORT
    language: one_of(*LANGUAGES) = "zh-CN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_screen(path: Path, table) -> ScreenConfig:
    sc = decode(path, "screen", table, ScreenSection)
    if not is_loopback(sc.listen):
        raise ConfigError(
            f"{path}: [screen] listen = {sc.listen!r}: the clerk's screen is served on the "
            "station itself only (127.0.0.1). A screen on the network needs TLS and a login by "
            "staff card and PIN or a per-device password, which this release does not serve; "
            "remove `listen` or set it to \"127.0.0.1\"")
    return ScreenConfig(sc.listen, sc.port, sc.language)

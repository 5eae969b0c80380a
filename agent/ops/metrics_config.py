"""The [metrics] section, apart from the exporter (agent/ops/metrics.py) so that reading the
configuration, which every command does, never loads prometheus_client."""

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from agent.contract.settings import Schema, decode, text
from agent.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:9464"


@dataclass(frozen=True)
class MetricsConfig:
    host: str
    port: int       # 0: any free port (tests)


class MetricsSection(Schema, kw_only=True):
    listen: text() = DEFAULT_LISTEN


def parse_metrics(path: Path, table) -> MetricsConfig:
    """The [metrics] section: `listen` as HOST:PORT on a loopback address."""
    listen = decode(path, "metrics", table, MetricsSection).listen
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    expected = 'HOST:PORT on a loopback address, e.g. "127.0.0.1:9464"'
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{path}: [metrics] listen: expected {expected}, got {listen!r}")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"{path}: [metrics] listen: metrics are served on localhost only; "
                          f"expected {expected}, got {listen!r}")
    return MetricsConfig(host, int(port))

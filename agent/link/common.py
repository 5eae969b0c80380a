"""What every MQTT link shares, without importing paho: the [mqtt] section (read by the agent
and the ingest alike), its settings, its status as the rest of the agent reads it, and the
reconnect backoff. The agent's process imports this module only
when the link runs in a process of its own (agent.link.process), so it never loads paho or the
TLS stack for nothing.
"""

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from agent.contract.errors import ConfigError
from agent.contract.settings import PATH, Schema, decode, integer, one_of, seconds, text


@dataclass(frozen=True)
class MqttConfig:
    host: str
    port: int
    ca_file: Path
    cert_file: Path
    key_file: Path
    keepalive_s: int
    inflight: int
    connack_timeout_s: float
    ack_timeout_s: float
    reconnect_min_s: float
    reconnect_max_s: float
    link: str = "process"  # the link in its own process, or a thread of the agent


LINK_MODES = ("process", "thread")


class MqttSection(Schema, kw_only=True):
    """[mqtt] as written in the file."""

    host: text()
    port: integer(1, 65535) = 8883
    ca_file: PATH
    cert_file: PATH
    key_file: PATH
    keepalive_s: integer(1, 3600) = 30
    inflight: integer(1, 1000) = 32
    connack_timeout_s: seconds(0.5, 300) = 10.0
    ack_timeout_s: seconds(0.5, 86400) = 60.0
    reconnect_min_s: seconds(0.01, 3600) = 1.0
    reconnect_max_s: seconds(0.01, 86400) = 60.0
    link: one_of(*LINK_MODES) = "process"


def parse_mqtt(path: Path, table: Any) -> MqttConfig:
    """The [mqtt] section, shared by the agent and the ingest."""
    mq = decode(path, "mqtt", table, MqttSection)
    mqtt = MqttConfig(**msgspec.structs.asdict(mq))
    if mqtt.reconnect_max_s < mqtt.reconnect_min_s:
        raise ConfigError(f"{path}: [mqtt] reconnect_max_s must not be below reconnect_min_s")
    return mqtt


@dataclass(frozen=True)
class LinkSettings:
    client_id: str
    host: str
    port: int
    ca_file: Path
    cert_file: Path
    key_file: Path
    keepalive_s: int = 30
    inflight: int = 32
    connack_timeout_s: float = 10.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    clean_start: bool = False
    session_expiry_s: int = 3600

    @classmethod
    def from_config(cls, client_id: str, mqtt) -> "LinkSettings":
        return cls(
            client_id=client_id, host=mqtt.host, port=mqtt.port, ca_file=mqtt.ca_file,
            cert_file=mqtt.cert_file, key_file=mqtt.key_file, keepalive_s=mqtt.keepalive_s,
            inflight=mqtt.inflight, connack_timeout_s=mqtt.connack_timeout_s,
            reconnect_min_s=mqtt.reconnect_min_s, reconnect_max_s=mqtt.reconnect_max_s,
        )


class Backoff:
    """Exponential backoff with full jitter (a random delay between 0 and the cap)."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None):
        self.base, self.cap, self.attempt = base, cap, 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2**self.attempt)
        self.attempt = min(self.attempt + 1, 30)
        return self._rng.uniform(0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class LinkStatus:
    """What an operator wants to know about the link; read from any thread."""

    def __init__(self):
        self.connected = False
        self.auth_failed = False
        self.last_error = ""
        self.connects = 0
        self.refused_publishes = 0

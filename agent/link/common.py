"""What every MQTT link shares, without importing paho: its settings, its status as the rest
of the agent reads it, and the reconnect backoff. The agent's process imports this module only
when the link runs in a process of its own (agent.link.process), so it never loads paho or the
TLS stack for nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path


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
    def from_config(cls, client_id: str, mqtt) -> LinkSettings:
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

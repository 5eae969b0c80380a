"""The ingest's TOML configuration, validated once into frozen objects."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path

from agent.contract.errors import ConfigError
from agent.contract.settings import REQUIRED, Section, read_toml
from agent.contract.topics import DEVICE_ID_RE
from agent.link.common import MqttConfig, parse_mqtt

WORKER_RE = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class IngestSettings:
    id: str
    worker: str
    data_dir: Path
    devices_dir: Path
    signing_key_file: Path
    group: str
    heartbeat_interval_s: float
    silence_intervals: int

    @property
    def client_id(self) -> str:
        """MQTT client id: unique per worker, or workers would take over each other's session."""
        return f"{self.id}-{self.worker}"

    @property
    def store_path(self) -> Path:
        return self.data_dir / "ingest.sqlite"


@dataclass(frozen=True)
class EnrolmentSettings:
    """The enrolment service (ingest/enrolment.py): the device CA and where keys go."""

    id: str
    data_dir: Path
    devices_dir: Path            # the ingest's registry: <id>.pem per device
    ca_cert_file: Path
    ca_key_file: Path
    cert_days: int


@dataclass(frozen=True)
class IngestConfig:
    path: Path
    ingest: IngestSettings | None
    mqtt: MqttConfig
    enrolment: EnrolmentSettings | None = None

    def require_enrolment(self) -> EnrolmentSettings:
        if self.enrolment is None:
            raise ConfigError(f"{self.path}: missing section [enrolment]")
        return self.enrolment

    def require_ingest(self) -> IngestSettings:
        if self.ingest is None:
            raise ConfigError(f"{self.path}: missing section [ingest]")
        return self.ingest


def load_ingest_config(path: str | Path) -> IngestConfig:
    raw, path = read_toml(path)
    unknown = sorted(set(raw) - {"ingest", "mqtt", "enrolment"})
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}")
    settings = None
    if "ingest" in raw:
        sec = Section(path, "ingest", raw["ingest"])
        data_dir = sec.path("data_dir", REQUIRED)
        settings = IngestSettings(
            id=sec.str("id", "ingest", pattern=DEVICE_ID_RE),
            worker=sec.str("worker", socket.gethostname().split(".")[0].lower() or "w",
                           pattern=WORKER_RE),
            data_dir=data_dir,
            devices_dir=sec.path("devices_dir", REQUIRED),
            signing_key_file=sec.path("signing_key_file", None) or data_dir / "ingest-signing.key",
            group=sec.str("group", "ingest", pattern=DEVICE_ID_RE),
            heartbeat_interval_s=sec.seconds("heartbeat_interval_s", 60, lo=0.05, hi=86400),
            silence_intervals=sec.int("silence_intervals", 3, lo=1, hi=1000),
        )
    enrolment = None
    if "enrolment" in raw:
        en = Section(path, "enrolment", raw["enrolment"])
        enrolment = EnrolmentSettings(
            id=en.str("id", "enrol", pattern=DEVICE_ID_RE),
            data_dir=en.path("data_dir", REQUIRED),
            devices_dir=en.path("devices_dir", REQUIRED),
            ca_cert_file=en.path("ca_cert_file", REQUIRED, must_exist=True),
            ca_key_file=en.path("ca_key_file", REQUIRED, must_exist=True),
            cert_days=en.int("cert_days", 365, lo=1, hi=3650),
        )
    return IngestConfig(path, settings, parse_mqtt(path, raw.get("mqtt")), enrolment)

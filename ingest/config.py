"""The ingest's TOML configuration, validated once into frozen objects."""

import dataclasses
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import msgspec

from agent.contract.errors import ConfigError
from agent.contract.settings import (
    PATH,
    Schema,
    UnknownKey,
    collecting_unknown_keys,
    decode,
    integer,
    read_toml,
    refuse_unknown_keys,
    refuse_unknown_sections,
    seconds,
    text,
)
from agent.contract.topics import DEVICE_ID_RE
from agent.link.common import MqttConfig, parse_mqtt

WORKER_RE = re.compile(r"^[A-Za-z0-9_-]+$")
STORE_URL_RE = re.compile(r"^postgres(ql)?://")


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
    #: [store] url: a PostgreSQL database (postgresql://...) all workers share; None keeps the
    #: SQLite file `store_path`.
    store_url: str | None = None
    #: The backend's public key: checks the price tables the bank recomputes purchases with.
    backend_public_key_file: Path | None = None

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
class BrokerSettings:
    """What `cocoon-ingest revoke` does to the broker: the CRL file it reads, and the command
    that makes it read the file again (for Mosquitto: a SIGHUP to its process)."""

    crl_file: Path | None = None
    reload_command: str | None = None


@dataclass(frozen=True)
class IngestConfig:
    path: Path
    ingest: IngestSettings | None
    mqtt: MqttConfig
    enrolment: EnrolmentSettings | None = None
    broker: BrokerSettings = BrokerSettings()
    #: Keys no section knows, each with its line and the nearest valid key (strict=False).
    unknown_keys: tuple[UnknownKey, ...] = ()

    def require_enrolment(self) -> EnrolmentSettings:
        if self.enrolment is None:
            raise ConfigError(f"{self.path}: missing section [enrolment]")
        return self.enrolment

    def require_ingest(self) -> IngestSettings:
        if self.ingest is None:
            raise ConfigError(f"{self.path}: missing section [ingest]")
        return self.ingest


class IngestSection(Schema, kw_only=True):
    id: text(DEVICE_ID_RE) = "ingest"
    worker: text(WORKER_RE) | None = None
    data_dir: PATH
    devices_dir: PATH
    signing_key_file: PATH | None = None
    group: text(DEVICE_ID_RE) = "ingest"
    heartbeat_interval_s: seconds(0.05, 86400) = 60.0
    silence_intervals: integer(1, 1000) = 3
    backend_public_key_file: PATH | None = None


class EnrolmentSection(Schema, kw_only=True):
    id: text(DEVICE_ID_RE) = "enrol"
    data_dir: PATH
    devices_dir: PATH
    ca_cert_file: PATH
    ca_key_file: PATH
    cert_days: integer(1, 3650) = 365


class StoreSection(Schema, kw_only=True):
    url: text(STORE_URL_RE) | None = None


class BrokerSection(Schema, kw_only=True):
    crl_file: PATH | None = None
    reload_command: text() | None = None


SECTIONS = {"ingest", "mqtt", "enrolment", "store", "broker"}


def load_ingest_config(path: str | Path, *, strict: bool = True) -> IngestConfig:
    """Read and validate the ingest's file. Unknown keys are refused when `strict`, else
    listed in `unknown_keys` for the caller to report."""
    raw, path = read_toml(path)
    refuse_unknown_sections(path, raw, SECTIONS)
    with collecting_unknown_keys() as found:
        config = IngestConfig(path, _ingest(path, raw.get("ingest"), raw.get("store")),
                              parse_mqtt(path, raw.get("mqtt")),
                              _enrolment(path, raw.get("enrolment")),
                              _broker(path, raw.get("broker")))
    if strict:
        refuse_unknown_keys(found)
    return dataclasses.replace(config, unknown_keys=tuple(found))


def _ingest(path: Path, table, store_table) -> IngestSettings | None:
    store = decode(path, "store", store_table, StoreSection, required=False)
    if table is None:
        return None
    sec = decode(path, "ingest", table, IngestSection)
    return IngestSettings(
        id=sec.id,
        worker=sec.worker or socket.gethostname().split(".")[0].lower() or "w",
        data_dir=sec.data_dir,
        devices_dir=sec.devices_dir,
        signing_key_file=sec.signing_key_file or sec.data_dir / "ingest-signing.key",
        group=sec.group,
        heartbeat_interval_s=sec.heartbeat_interval_s,
        silence_intervals=sec.silence_intervals,
        store_url=store.url,
        backend_public_key_file=sec.backend_public_key_file,
    )


def _enrolment(path: Path, table) -> EnrolmentSettings | None:
    if table is None:
        return None
    en = decode(path, "enrolment", table, EnrolmentSection)
    for key in ("ca_cert_file", "ca_key_file"):
        if not getattr(en, key).exists():
            raise ConfigError(f"{path}: [enrolment] {key}: file {getattr(en, key)} does not "
                              "exist")
    return EnrolmentSettings(**msgspec.structs.asdict(en))


def _broker(path: Path, table) -> BrokerSettings:
    if table is None:
        return BrokerSettings()
    sec = decode(path, "broker", table, BrokerSection)
    return BrokerSettings(crl_file=sec.crl_file, reload_command=sec.reload_command)

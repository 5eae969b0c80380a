"""Device configuration: one TOML file, validated once into frozen, typed objects.

Nothing below this module sees a raw dict. Every error names the file, the key and what was
expected, so a field technician can fix the file without reading code. Relative paths are resolved
against the configuration file's folder. Key material is always referenced by path, never inline.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from agent.contract.settings import REQUIRED, Section, read_toml
from agent.contract.topics import DEVICE_ID_RE
from agent.errors import ConfigError
from agent.link.common import MqttConfig, parse_mqtt

SIGNING_ALGS = ("Ed25519", "ES256")


@dataclass(frozen=True)
class DeviceConfig:
    id: str
    data_dir: Path
    signing_key_file: Path
    signing_alg: str
    heartbeat_interval_s: float
    config_trial_s: float = 120.0   # a remote configuration must come up healthy within this
    #: An RFC 7512 URI naming the signing key on a PKCS#11 token, in place of the key file;
    #: with its module (.so) and the file holding the token's user PIN (agent/contract/pkcs11.py)
    signing_key: str | None = None
    pkcs11_module: Path | None = None
    pkcs11_pin_file: Path | None = None


@dataclass(frozen=True)
class KeysConfig:
    ingest_public_key_file: Path
    backend_public_key_file: Path | None
    bank_public_key_file: Path | None


@dataclass(frozen=True)
class OutboxConfig:
    capacity_bytes: int
    alert_reserve_bytes: int
    telemetry_batch_ms: int


@dataclass(frozen=True)
class SimulateConfig:
    """Simulated inputs for the demo: a scale whose readings become events on a schedule."""

    enabled: bool
    interval_s: float


@dataclass(frozen=True)
class AgentConfig:
    path: Path
    device: DeviceConfig
    mqtt: MqttConfig
    keys: KeysConfig
    outbox: OutboxConfig
    simulate: SimulateConfig
    #: Parsed optional sections owned by other modules (see PLUGGED_SECTIONS), by name.
    plugged: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def section(self, name: str) -> Any:
        """The parsed object of an optional section owned by another module, or None when
        the file has no such section."""
        if name not in PLUGGED_SECTIONS:
            raise KeyError(f"[{name}] is not a known configuration section")
        return self.plugged.get(name)

    @property
    def outbox_path(self) -> Path:
        return self.device.data_dir / "outbox.sqlite"


#: Optional sections parsed by the module that owns them: name -> "module:function", where
#: function(path: Path, table: dict) -> a frozen object, raising ConfigError. Loaded only
#: when the file has the section, so the core never imports a driver it does not use.
PLUGGED_SECTIONS: dict[str, str] = {
    "warehouse": "agent.warehouse.config:parse_warehouse",
    "station": "agent.station.config:parse_station",
    "card": "agent.station.config:parse_card",
    "scale": "agent.station.config:parse_scale",
    "printer": "agent.station.config:parse_printer",
    "signals": "agent.station.config:parse_signals",
    "update": "agent.fleet.release.layout:parse_update",
    "firmware": "firmware_bridge.config:parse_firmware",
    "metrics": "agent.ops.metrics:parse_metrics",
}


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate an agent configuration file."""
    raw, path = read_toml(path)
    return parse_config(raw, path)


def parse_config(raw: dict, path: Path) -> AgentConfig:
    if "tags" in raw:
        raise ConfigError(f"{path}: [tags] is not read by the agent: the warehouse's tag "
                          "readers are [[warehouse.readers]] tables (name, port, protocol, "
                          "antennas, silence_s; docs/warehouse.md)")
    known = {"device", "mqtt", "keys", "outbox", "simulate", *PLUGGED_SECTIONS}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"{path}: unknown section(s) {', '.join(unknown)}; expected {sorted(known)}")

    dev = Section(path, "device", raw.get("device"))
    data_dir = dev.path("data_dir", REQUIRED)
    token = _token_key(dev)
    device = DeviceConfig(
        id=dev.str("id", REQUIRED, pattern=DEVICE_ID_RE),
        data_dir=data_dir,
        signing_key_file=dev.path("signing_key_file", None) or data_dir / "device-signing.key",
        signing_alg=dev.choice("signing_alg", SIGNING_ALGS, "ES256" if token else "Ed25519"),
        heartbeat_interval_s=dev.seconds("heartbeat_interval_s", 60, lo=0.05, hi=86400),
        config_trial_s=dev.seconds("config_trial_s", 120, lo=0.5, hi=86400),
        **token,
    )

    mqtt = parse_mqtt(path, raw.get("mqtt"))

    ks = Section(path, "keys", raw.get("keys"))
    keys = KeysConfig(
        ingest_public_key_file=ks.path("ingest_public_key_file", REQUIRED),
        backend_public_key_file=ks.path("backend_public_key_file", None),
        bank_public_key_file=ks.path("bank_public_key_file", None),
    )

    ob = Section(path, "outbox", raw.get("outbox"), required=False)
    outbox = OutboxConfig(
        capacity_bytes=ob.int("capacity_bytes", 512 * 1024 * 1024, lo=64 * 1024, hi=2**40),
        alert_reserve_bytes=ob.int("alert_reserve_bytes", 1024 * 1024, lo=4096, hi=2**32),
        telemetry_batch_ms=ob.int("telemetry_batch_ms", 200, lo=0, hi=10_000),
    )

    sim = Section(path, "simulate", raw.get("simulate"), required=False)
    simulate = SimulateConfig(
        enabled=sim.bool("enabled", False),
        interval_s=sim.seconds("interval_s", 2, lo=0.01, hi=86400),
    )
    plugged = {name: _plugged_parser(name)(path, raw[name])
               for name in PLUGGED_SECTIONS if name in raw}
    return AgentConfig(path, device, mqtt, keys, outbox, simulate, MappingProxyType(plugged))


def _token_key(dev: Section) -> dict:
    """[device] signing_key, pkcs11_module and pkcs11_pin_file: the signing key on a PKCS#11
    token (ES256 only), or {} for the key file."""
    uri = dev.str("signing_key", None)
    if uri is None:
        for key in ("pkcs11_module", "pkcs11_pin_file"):
            if key in dev.table:
                raise ConfigError(f"{dev.file}: [device] {key}: only with signing_key, the "
                                  "PKCS#11 URI of a key on a token")
        return {}
    from agent.contract.pkcs11 import parse_pkcs11_uri

    try:
        parse_pkcs11_uri(uri)
    except ValueError as exc:
        raise dev._fail("signing_key", "a PKCS#11 URI such as "
                        f"\"pkcs11:token=cocoon;object=device-signing\" ({exc})", uri) from None
    if "signing_key_file" in dev.table:
        raise ConfigError(f"{dev.file}: [device] signing_key_file: not with signing_key; the "
                          "key is either on a PKCS#11 token or in a file")
    if dev.table.get("signing_alg", "ES256") != "ES256":
        raise dev._fail("signing_alg", "ES256 with a key on a PKCS#11 token (tokens sign "
                        "ECDSA P-256, not Ed25519)", dev.table["signing_alg"])
    return {"signing_key": uri, "pkcs11_module": dev.path("pkcs11_module", REQUIRED),
            "pkcs11_pin_file": dev.path("pkcs11_pin_file", None)}


def _plugged_parser(name: str) -> Callable[[Path, Any], Any]:
    module, _, function = PLUGGED_SECTIONS[name].partition(":")
    return getattr(importlib.import_module(module), function)

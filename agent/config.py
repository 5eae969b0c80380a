"""Device configuration: one TOML file, validated once into frozen, typed objects.

Nothing below this module sees a raw dict. Every error names the file, the key and what was
expected, so a field technician can fix the file without reading code. Relative paths are resolved
against the configuration file's folder. Key material is always referenced by path, never inline.
"""

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import msgspec

from agent.contract.settings import (
    FLAG,
    PATH,
    Schema,
    UnknownKey,
    collecting_unknown_keys,
    decode,
    integer,
    one_of,
    read_toml,
    refuse_unknown_keys,
    refuse_unknown_sections,
    seconds,
    text,
)
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
    #: Keys of the file that no section knows (misspelt, or from another version), each with
    #: its line and the nearest valid key. Empty unless read with strict=False.
    unknown_keys: tuple[UnknownKey, ...] = ()

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
    "screen": "agent.screen.config:parse_screen",
    "update": "agent.fleet.release.layout:parse_update",
    "firmware": "firmware_bridge.config:parse_firmware",
    "metrics": "agent.ops.metrics_config:parse_metrics",
}


class DeviceSection(Schema, kw_only=True):
    id: text(DEVICE_ID_RE)
    data_dir: PATH
    signing_key_file: PATH | None = None
    signing_alg: one_of(*SIGNING_ALGS) | None = None
    heartbeat_interval_s: seconds(0.05, 86400) = 60.0
    config_trial_s: seconds(0.5, 86400) = 120.0
    signing_key: text() | None = None
    pkcs11_module: PATH | None = None
    pkcs11_pin_file: PATH | None = None


class KeysSection(Schema, kw_only=True):
    ingest_public_key_file: PATH
    backend_public_key_file: PATH | None = None
    bank_public_key_file: PATH | None = None


class OutboxSection(Schema, kw_only=True):
    capacity_bytes: integer(64 * 1024, 2**40) = 512 * 1024 * 1024
    alert_reserve_bytes: integer(4096, 2**32) = 1024 * 1024
    telemetry_batch_ms: integer(0, 10_000) = 200


class SimulateSection(Schema, kw_only=True):
    enabled: FLAG = False
    interval_s: seconds(0.01, 86400) = 2.0


def load_config(path: str | Path, *, strict: bool = True) -> AgentConfig:
    """Read and validate an agent configuration file. Unknown keys are refused when
    `strict`, else kept in `unknown_keys` for the caller to report."""
    raw, path = read_toml(path)
    return parse_config(raw, path, strict=strict)


def parse_config(raw: dict, path: Path, *, strict: bool = True,
                 source: str | None = None) -> AgentConfig:
    """The configuration in `raw`, read from `path` (whose text is `source` when it is not
    yet written there). With `strict` (the default: provision, a remote configuration) an
    unknown key is an error; without it, the keys are left out and listed in
    `unknown_keys`."""
    with collecting_unknown_keys(source) as found:
        config = _parse(raw, path, source)
    if strict:
        refuse_unknown_keys(found)
    return dataclasses.replace(config, unknown_keys=tuple(found))


def _parse(raw: dict, path: Path, source: str | None) -> AgentConfig:
    if "tags" in raw:
        raise ConfigError(f"{path}: [tags] is not read by the agent: the warehouse's tag "
                          "readers are [[warehouse.readers]] tables (name, port, protocol, "
                          "antennas, silence_s; docs/warehouse.md)")
    refuse_unknown_sections(path, raw, {"device", "mqtt", "keys", "outbox", "simulate",
                                        *PLUGGED_SECTIONS}, source)

    dev = decode(path, "device", raw.get("device"), DeviceSection)
    device = DeviceConfig(
        id=dev.id,
        data_dir=dev.data_dir,
        signing_key_file=dev.signing_key_file or dev.data_dir / "device-signing.key",
        signing_alg=dev.signing_alg or ("ES256" if dev.signing_key else "Ed25519"),
        heartbeat_interval_s=dev.heartbeat_interval_s,
        config_trial_s=dev.config_trial_s,
        **_token_key(path, dev),
    )
    mqtt = parse_mqtt(path, raw.get("mqtt"))
    ks = decode(path, "keys", raw.get("keys"), KeysSection)
    ob = decode(path, "outbox", raw.get("outbox"), OutboxSection, required=False)
    sim = decode(path, "simulate", raw.get("simulate"), SimulateSection, required=False)
    plugged = {name: _plugged_parser(name)(path, raw[name])
               for name in PLUGGED_SECTIONS if name in raw}
    return AgentConfig(path, device, mqtt,
                       KeysConfig(**_fields(ks)), OutboxConfig(**_fields(ob)),
                       SimulateConfig(**_fields(sim)), MappingProxyType(plugged))


def _fields(section: Schema) -> dict:
    return msgspec.structs.asdict(section)


def _token_key(path: Path, dev: DeviceSection) -> dict:
    """[device] signing_key, pkcs11_module and pkcs11_pin_file: the signing key on a PKCS#11
    token (ES256 only), or {} for the key file."""
    uri = dev.signing_key
    if uri is None:
        for key in ("pkcs11_module", "pkcs11_pin_file"):
            if getattr(dev, key) is not None:
                raise ConfigError(f"{path}: [device] {key}: only with signing_key, the "
                                  "PKCS#11 URI of a key on a token")
        return {}
    from agent.contract.pkcs11 import parse_pkcs11_uri

    try:
        parse_pkcs11_uri(uri)
    except ValueError as exc:
        raise ConfigError(f"{path}: [device] signing_key: expected a PKCS#11 URI such as "
                          f"\"pkcs11:token=cocoon;object=device-signing\" ({exc}), "
                          f"got {uri!r}") from None
    if dev.signing_key_file is not None:
        raise ConfigError(f"{path}: [device] signing_key_file: not with signing_key; the "
                          "key is either on a PKCS#11 token or in a file")
    if dev.signing_alg not in (None, "ES256"):
        raise ConfigError(f"{path}: [device] signing_alg: expected ES256 with a key on a "
                          "PKCS#11 token (tokens sign ECDSA P-256, not Ed25519), got "
                          f"{dev.signing_alg!r}")
    if dev.pkcs11_module is None:
        raise ConfigError(f"{path}: [device] pkcs11_module: missing, expected a file path")
    return {"signing_key": uri, "pkcs11_module": dev.pkcs11_module,
            "pkcs11_pin_file": dev.pkcs11_pin_file}


def _plugged_parser(name: str) -> Callable[[Path, Any], Any]:
    module, _, function = PLUGGED_SECTIONS[name].partition(":")
    return getattr(importlib.import_module(module), function)

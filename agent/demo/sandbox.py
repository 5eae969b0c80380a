"""A complete local installation on one machine, for the demo and the tests.

It lays out what a real deployment spreads over the bank and the field: a throwaway CA and a
Mosquitto broker with TLS client certificates and an ACL; the ingest with its ack key and device
registry; bank and backend command keys; and any number of devices, each with a certificate, a
signing key and a configuration file written exactly as a technician would write it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import tomlkit

from agent.contract.signing import generate_key_file, load_signer
from agent.demo.devpki import LocalCA
from agent.demo.localbroker import LocalBroker


def _toml_value(value):
    """A value tomlkit writes: numbers, flags, lists and tables as they are, paths as text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_toml_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _toml_value(v) for k, v in value.items() if v is not None}
    return str(value)


def write_toml(path: Path, sections: dict[str, dict]) -> Path:
    doc = {name: _toml_value(table) for name, table in sections.items()}
    path.write_text(tomlkit.dumps(doc), encoding="utf-8")
    return path


@dataclass
class Site:
    root: Path
    ca: LocalCA
    broker: LocalBroker
    ingest_config: Path
    operator_config: Path
    bank_key: Path
    backend_key: Path
    devices: dict[str, Path] = field(default_factory=dict)
    mqtt_overrides: dict = field(default_factory=dict)
    device_sections: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path, *, mqtt_overrides: dict | None = None) -> Site:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
        ca = LocalCA.create(root / "pki")
        server = ca.issue("localhost", server=True)
        broker = LocalBroker(root / "broker", ca.cert_file, server.cert_file, server.key_file,
                             crl_file=ca.crl_file)
        keys = root / "keys"
        keys.mkdir(exist_ok=True)
        for name in ("bank", "backend"):
            if not (keys / f"{name}.key").exists():
                generate_key_file(keys / f"{name}.key")
        for name in ("bank", "backend"):
            (keys / f"{name}.pem").write_bytes(load_signer(keys / f"{name}.key").public_key_pem())
        return cls(root, ca, broker, root / "ingest" / "ingest.toml", root / "operator.toml",
                   keys / "bank.key", keys / "backend.key",
                   mqtt_overrides=dict(mqtt_overrides or {}))

    def start_broker(self) -> LocalBroker:
        self.broker.start()
        self._write_ingest()
        self._write_operator()
        for device in self.devices:
            self._write_device(device)
        return self.broker

    def mqtt_section(self, cn: str, **overrides) -> dict:
        pair = self.ca.issue(cn)
        section = {
            "host": self.broker.host,
            "port": self.broker.port,
            "ca_file": str(self.ca.cert_file),
            "cert_file": str(pair.cert_file),
            "key_file": str(pair.key_file),
        }
        section.update(self.mqtt_overrides)
        section.update(overrides)
        return section

    def _write_ingest(self) -> None:
        d = self.ingest_config.parent
        (d / "devices").mkdir(parents=True, exist_ok=True)
        if not (d / "ingest-signing.key").exists():
            generate_key_file(d / "ingest-signing.key")
        (d / "ingest-public.pem").write_bytes(
            load_signer(d / "ingest-signing.key").public_key_pem())
        write_toml(self.ingest_config, {
            "ingest": {"id": "ingest", "data_dir": ".", "devices_dir": "devices",
                       "heartbeat_interval_s": 5, "silence_intervals": 3,
                       "backend_public_key_file": str(self.root / "keys" / "backend.pem")},
            "mqtt": self.mqtt_section("ingest"),
        })

    def _write_operator(self) -> None:
        write_toml(self.operator_config, {"mqtt": self.mqtt_section("operator")})

    @property
    def ingest_public_key(self) -> Path:
        return self.ingest_config.parent / "ingest-public.pem"

    def add_device(self, device: str, /, **sections) -> Path:
        """Create (or update) a device: cert, signing key, config, registration."""
        self.devices[device] = self.root / "devices" / device / "agent.toml"
        self.device_sections[device] = sections
        if self.broker.port is not None:
            self._write_device(device)
        return self.devices[device]

    def _write_device(self, device: str) -> None:
        path = self.devices[device]
        data_dir = path.parent / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        extra = {k: dict(v) for k, v in self.device_sections.get(device, {}).items()}
        sections = {
            "device": {"id": device, "data_dir": "data", "heartbeat_interval_s": 5,
                       **extra.pop("device", {})},
            "mqtt": self.mqtt_section(device, **extra.pop("mqtt", {})),
            "keys": {"ingest_public_key_file": str(self.ingest_public_key),
                     "backend_public_key_file": str(self.root / "keys" / "backend.pem"),
                     "bank_public_key_file": str(self.root / "keys" / "bank.pem"),
                     **extra.pop("keys", {})},
        }
        sections.update(extra)
        write_toml(path, sections)
        key = data_dir / "device-signing.key"
        if not key.exists():
            generate_key_file(key)
        registry = self.ingest_config.parent / "devices"
        registry.mkdir(parents=True, exist_ok=True)
        (registry / f"{device}.pem").write_bytes(load_signer(key).public_key_pem())

    def device_public_key(self, device: str) -> Path:
        return self.ingest_config.parent / "devices" / f"{device}.pem"

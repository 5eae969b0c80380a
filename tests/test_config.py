"""Configuration: one TOML file validated once; every error names file, key and expectation."""

from pathlib import Path

import pytest

from agent.config import load_config
from agent.errors import ConfigError
from ingest.config import load_ingest_config

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = """
[device]
id = "station-01"
data_dir = "data"
[mqtt]
host = "127.0.0.1"
ca_file = "ca.pem"
cert_file = "dev.pem"
key_file = "dev.key"
[keys]
ingest_public_key_file = "keys/ingest.pem"
"""


def write(tmp_path, text, name="agent.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_example_files_are_valid():
    cfg = load_config(ROOT / "config" / "agent.example.toml")
    assert cfg.device.id == "station-01"
    assert cfg.mqtt.port == 8883
    assert cfg.keys.bank_public_key_file == Path("/etc/cocoon-agent/keys/bank.pem")
    ing = load_ingest_config(ROOT / "config" / "ingest.example.toml")
    assert ing.require_ingest().silence_intervals == 3


def test_minimal_config_defaults_and_relative_paths(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.device.data_dir == tmp_path / "data"
    assert cfg.device.signing_key_file == tmp_path / "data" / "device-signing.key"
    assert cfg.keys.ingest_public_key_file == tmp_path / "keys" / "ingest.pem"
    assert cfg.keys.bank_public_key_file is None
    assert cfg.mqtt.port == 8883 and cfg.device.signing_alg == "Ed25519"
    assert cfg.outbox.capacity_bytes == 512 * 1024 * 1024
    with pytest.raises(AttributeError):
        cfg.device.id = "other"  # frozen


@pytest.mark.parametrize("change,key,expected", [
    (('id = "station-01"', 'id = "Station_01"'), "[device] id", "matching"),
    (('host = "127.0.0.1"', 'host = 5'), "[mqtt] host", "a string"),
    (('host = "127.0.0.1"', 'host = "127.0.0.1"\nport = 70000'), "[mqtt] port",
     "an integer from 1 to 65535"),
    (('ca_file = "ca.pem"\n', ''), "[mqtt] ca_file", "missing"),
    (('[keys]\ningest_public_key_file = "keys/ingest.pem"\n', ''), "[keys]", "missing section"),
    (('data_dir = "data"', 'data_dir = "data"\nheartbeat_interval_s = true'),
     "[device] heartbeat_interval_s", "a number of seconds"),
    (('data_dir = "data"', 'data_dir = "data"\nsigning_alg = "RSA"'), "[device] signing_alg",
     "one of Ed25519, ES256"),
])
def test_errors_name_file_key_and_expectation(tmp_path, change, key, expected):
    path = write(tmp_path, MINIMAL.replace(*change))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and key in message and expected in message


def test_unknown_section_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="unknown section"):
        load_config(write(tmp_path, MINIMAL + "\n[mqqt]\nhost='x'\n"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[device\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")

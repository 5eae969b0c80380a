"""Unknown and misspelt configuration keys: each one named with its section, its line and the
nearest valid key; refused by provision, the doctor and a remote configuration; reported by
`run`, which goes on selling with the defaults."""

import json
import signal
import subprocess

import pytest
from click.testing import CliRunner

from agent.cli.main import cli
from agent.config import load_config, parse_config
from agent.contract.settings import line_of
from agent.errors import ConfigError
from ingest.config import load_ingest_config
from tests.support.running import BIN, add_device, ingest_store_rows
from tests.support.running import cli as run_cli
from tests.support.waiting import wait_for

MINIMAL = """\
[device]
id = "station-01"
data_dir = "data"
heartbeat_intervall_s = 5
[mqtt]
host = "127.0.0.1"
ca_file = "ca.pem"
cert_file = "dev.pem"
key_file = "dev.key"
keepalive = 10
[keys]
ingest_public_key_file = "keys/ingest.pem"
[warehouse]
[[warehouse.readers]]
name = "dock"
port = "/dev/ttyUSB0"
[[warehouse.readers]]
name = "gate"
port = "/dev/ttyUSB1"
silence = 3
"""


def write(tmp_path, text=MINIMAL):
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_strict_reading_names_every_unknown_key_with_its_line_and_the_nearest_key(tmp_path):
    path = write(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    lines = str(err.value).splitlines()
    assert lines == [
        f"{path}:4: [device] heartbeat_intervall_s: unknown key; "
        "did you mean heartbeat_interval_s?",
        f"{path}:10: [mqtt] keepalive: unknown key; did you mean keepalive_s?",
        f"{path}:20: [warehouse.readers[1]] silence: unknown key; did you mean silence_s?",
    ]


def test_lenient_reading_leaves_them_out_and_lists_them(tmp_path):
    config = load_config(write(tmp_path), strict=False)
    assert config.device.heartbeat_interval_s == 60  # the default: the misspelt key is not read
    assert config.mqtt.keepalive_s == 30
    assert config.section("warehouse").readers[1].silence_s is None
    assert [(u.section, u.key, u.line, u.suggestion) for u in config.unknown_keys] == [
        ("device", "heartbeat_intervall_s", 4, "heartbeat_interval_s"),
        ("mqtt", "keepalive", 10, "keepalive_s"),
        ("warehouse.readers[1]", "silence", 20, "silence_s"),
    ]


def test_a_key_with_no_near_name_and_an_unknown_section(tmp_path):
    config = load_config(write(tmp_path, MINIMAL.replace("keepalive = 10", "colour = 3")),
                         strict=False)
    assert str(config.unknown_keys[1]).endswith("[mqtt] colour: unknown key")
    with pytest.raises(ConfigError, match=r":21: unknown section \[scael\]; did you mean "
                                          r"\[scale\]\?"):
        load_config(write(tmp_path, MINIMAL + '[scael]\nport = "/dev/ttyUSB0"\n'),
                    strict=False)


def test_line_of_reads_headers_quoted_keys_and_arrays_of_tables():
    source = '# c\n[ "device" ]\n"id" = 1\n[[r]]\na = 1\n[[r]]\n a = 2 # x\n[t.u]\nb=1\n'
    assert line_of(source, "device", "id") == 3
    assert (line_of(source, "r[0]", "a"), line_of(source, "r[1]", "a")) == (5, 7)
    assert line_of(source, "t.u", "b") == 9
    assert line_of(source, "device", "absent") is None
    assert line_of(source, "", "t") == 8


def test_every_command_goes_on_and_logs_each_key_once(tmp_path):
    path = write(tmp_path, MINIMAL.split("[warehouse]")[0])
    (tmp_path / "data").mkdir()
    assert run_cli("cocoon-agent", "--config", path, "keygen").returncode == 0
    done = run_cli("cocoon-agent", "--config", path, "queue")
    assert done.returncode == 0, done.stderr
    assert "pending" in done.stdout
    errors = [line for line in done.stderr.splitlines() if "unknown key" in line]
    assert len(errors) == 2, done.stderr
    assert "agent.toml:4: [device] heartbeat_intervall_s" in errors[0]
    assert "did you mean heartbeat_interval_s?" in errors[0] and "ignored" in errors[0]


def test_the_doctor_fails_on_them_and_says_what_to_do(tmp_path):
    path = write(tmp_path)
    skip = ["--skip", "broker", "--skip", "certificate", "--skip", "clock", "--skip", "disk",
            "--skip", "outbox", "--skip", "key files", "--skip", "systemd unit",
            "--skip", "tag reader dock", "--skip", "tag reader gate"]
    result = CliRunner().invoke(cli, ["--config", str(path), "doctor", "--json", *skip])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    (check,) = report["checks"]
    assert (check["check"], check["status"]) == ("configuration", "fail")
    assert "[device] heartbeat_intervall_s: unknown key" in check["detail"]
    assert "silence_s?" in check["detail"] and "correct or remove" in check["hint"]
    fixed = write(tmp_path, MINIMAL.replace("heartbeat_intervall_s = 5\n", "")
                  .replace("keepalive = 10\n", "").replace("silence = 3\n", ""))
    result = CliRunner().invoke(cli, ["--config", str(fixed), "doctor", "--json", *skip])
    assert result.exit_code == 0 and json.loads(result.stdout)["ok"] is True


def test_the_ingest_reads_them_the_same_way(tmp_path):
    path = tmp_path / "ingest.toml"
    path.write_text('[ingest]\ndata_dir = "d"\ndevices_dir = "devices"\nsilence_interval = 4\n'
                    '[mqtt]\nhost = "127.0.0.1"\nca_file = "a"\ncert_file = "b"\nkey_file = "c"\n')
    with pytest.raises(ConfigError, match=r":4: \[ingest\] silence_interval: unknown key; "
                                          r"did you mean silence_intervals\?"):
        load_ingest_config(path)
    lenient = load_ingest_config(path, strict=False)
    assert lenient.require_ingest().silence_intervals == 3
    assert [u.key for u in lenient.unknown_keys] == ["silence_interval"]


def test_a_parser_called_on_its_own_is_strict(tmp_path):
    raw = {"device": {"id": "station-01", "data_dir": "d", "colour": "red"},
           "mqtt": {"host": "h", "ca_file": "a", "cert_file": "b", "key_file": "c"},
           "keys": {"ingest_public_key_file": "k"}}
    with pytest.raises(ConfigError, match=r"\[device\] colour: unknown key"):
        parse_config(raw, tmp_path / "agent.toml")
    assert parse_config(raw, tmp_path / "agent.toml", strict=False).device.id == "station-01"


def test_run_goes_on_selling_and_records_one_alert(site, services):
    """A station upgraded from a version that ignored the key: the agent runs with the
    default, logs the key as an error, and the bank receives one config.unknown_keys alert."""
    config = add_device(site, "station-01", device_section={"heartbeat_intervall_s": 5})
    services.ingest(site.ingest_config).wait_connected()
    text = config.read_text()
    line = next(n for n, row in enumerate(text.splitlines(), 1)
                if row.startswith("heartbeat_intervall_s"))
    agent = subprocess.Popen([str(BIN / "cocoon-agent"), "--config", str(config), "run"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(r["type"] == "config.unknown_keys"
                             for r in ingest_store_rows(site, "station-01")), timeout=30)
        done = run_cli("cocoon-agent", "--config", config, "emit", "--type", "test.sale",
                       "--priority", "money", "--body", '{"lot": "L-1"}')
        assert done.returncode == 0, done.stderr
        sale = int(done.stdout)
        wait_for(lambda: any(r["seq"] == sale for r in ingest_store_rows(site, "station-01")),
                 timeout=30)
        assert agent.poll() is None
    finally:
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=30)
    alerts = [r for r in ingest_store_rows(site, "station-01")
              if r["type"] == "config.unknown_keys"]
    assert len(alerts) == 1 and alerts[0]["priority"] == "alert"
    body = json.loads(alerts[0]["payload"])["body"]
    assert body["keys"] == [{"section": "device", "key": "heartbeat_intervall_s",
                             "line": line, "suggestion": "heartbeat_interval_s"}]
    assert body["file"] == str(config)
    logged = [row for row in stderr.splitlines() if "heartbeat_intervall_s" in row]
    assert len(logged) == 1 and f"agent.toml:{line}:" in logged[0], stderr

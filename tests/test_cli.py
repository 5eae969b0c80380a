"""The cocoon-agent command line, run as a user runs it (a subprocess per command)."""

import json
import subprocess
import sys

import pytest

import agent
from agent.demo.sandbox import write_toml

COMMANDS = ["run", "keygen", "identity", "emit", "queue", "verify"]


def cocoon(*args, check=True, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "agent.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=60, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture
def config(tmp_path):
    (tmp_path / "keys").mkdir()
    return write_toml(tmp_path / "agent.toml", {
        "device": {"id": "dev-a", "data_dir": "data"},
        "mqtt": {"host": "127.0.0.1", "ca_file": "ca.pem", "cert_file": "c.pem",
                 "key_file": "c.key"},
        "keys": {"ingest_public_key_file": "keys/ingest.pem"},
    })


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    out = cocoon(command, "--help").stdout
    assert "Usage:" in out and len(out.splitlines()) > 3


def test_main_help_lists_all_commands():
    out = cocoon("--help").stdout
    for command in COMMANDS:
        assert command in out


def test_keygen_identity_and_refusal_to_overwrite(config, tmp_path):
    created = cocoon("--config", config, "keygen")
    assert "BEGIN PUBLIC KEY" in created.stdout
    key = tmp_path / "data" / "device-signing.key"
    assert key.stat().st_mode & 0o777 == 0o600
    before = key.read_bytes()
    again = cocoon("--config", config, "keygen", check=False)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    assert key.read_bytes() == before
    ident = cocoon("--config", config, "identity", "--public-key").stdout
    assert ident == created.stdout


def test_emit_queue_and_verify(config, tmp_path):
    cocoon("--config", config, "keygen")
    seqs = [cocoon("--config", config, "emit", "--type", "test.manual", "--priority", p,
                   "--body", json.dumps({"n": i})).stdout.strip()
            for i, p in enumerate(["money", "alert", "telemetry"])]
    assert seqs == ["1", "2", "3"]
    q = json.loads(cocoon("--config", config, "queue", "--json").stdout)
    assert q["pending"] == 3 and q["head_seq"] == 3 and q["oldest_pending_age_s"] >= 0
    assert "pending" in cocoon("--config", config, "queue").stdout

    import sqlite3
    rows = sqlite3.connect(tmp_path / "data" / "outbox.sqlite").execute(
        "SELECT payload FROM events ORDER BY seq").fetchall()
    capture = tmp_path / "capture.jsonl"
    capture.write_bytes(b"\n".join(bytes(r[0]) for r in rows) + b"\n")
    pem = tmp_path / "dev.pem"
    pem.write_text(cocoon("--config", config, "identity", "--public-key").stdout)
    ok = cocoon("verify", "--public-key", pem, capture)
    assert ok.stdout.strip().splitlines()[-1].startswith("OK: 3 valid events")

    # tamper: flip a body, duplicate a line, drop one, reorder
    lines = capture.read_bytes().splitlines()
    bad = json.loads(lines[1])
    bad["body"]["n"] = 99
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_bytes(b"\n".join([lines[2], lines[0], lines[0],
                                     json.dumps(bad).encode()]) + b"\n")
    res = cocoon("verify", "--public-key", pem, tampered, check=False)
    assert res.returncode == 1
    out = res.stdout
    assert "bad_signature" in out and "duplicate" in out and "reordered" in out
    assert "gap: seq 2 missing" in out
    assert out.strip().splitlines()[-1].startswith("FAILED")


def test_emit_rejects_bad_input_clearly(config):
    cocoon("--config", config, "keygen")
    res = cocoon("--config", config, "emit", "--type", "test.x", "--priority", "money",
                 "--body", '{"w": 1.5}', check=False)
    assert res.returncode == 2 and "exact values travel as strings" in res.stderr
    res = cocoon("--config", config, "emit", "--type", "test.x", "--priority", "money",
                 "--body", "not json", check=False)
    assert res.returncode == 2 and "not valid JSON" in res.stderr


def test_missing_key_and_bad_config_say_what_to_do(config, tmp_path):
    res = cocoon("--config", config, "identity", "--public-key", check=False)
    assert res.returncode == 2 and "cocoon-agent keygen" in res.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text('[device]\nid = "BAD ID"\ndata_dir = "d"\n')
    res = cocoon("--config", broken, "queue", check=False)
    assert res.returncode == 2 and "[device] id" in res.stderr and str(broken) in res.stderr
    res = cocoon("queue", check=False)
    assert res.returncode != 0 and "--config" in res.stderr


def test_version_of_both_programs():
    assert cocoon("--version").stdout.splitlines()[0] == f"cocoon-agent {agent.__version__}"
    proc = subprocess.run([sys.executable, "-c", "from ingest.cli import main; main()",
                           "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"cocoon-ingest {agent.__version__}"


def test_config_before_or_after_the_command(config, tmp_path):
    cocoon("--config", config, "keygen")
    before = json.loads(cocoon("--config", config, "queue", "--json").stdout)
    after = json.loads(cocoon("queue", "--json", "--config", config).stdout)
    equals = json.loads(cocoon("queue", f"--config={config}", "--json").stdout)
    assert before == after == equals
    # the file named after the command is the one read
    missing = cocoon("queue", "--config", tmp_path / "none.toml", check=False)
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_only_the_groups_options_move_and_nothing_after_a_double_dash():
    from agent.contract.commandline import hoist_global_options

    assert hoist_global_options(["emit", "--body", "{}", "--config", "a.toml"]) == [
        "--config", "a.toml", "emit", "--body", "{}"]
    assert hoist_global_options(["verify", "--", "--config", "x"]) == [
        "verify", "--", "--config", "x"]

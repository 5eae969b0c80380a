"""`cocoon-agent tags watch` and `tags simulate`, run as a technician runs them: subprocesses
on a socat pty pair."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli.main import cli
from drivers.tags.sim_field import TagField
from drivers.tags.simulator import BB7ESimulator
from tests.support.tag_sim_frames import NOTICE
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.pty",)
ROOT = Path(__file__).resolve().parent.parent


def cocoon(*args):
    return [sys.executable, "-m", "agent.cli.main", *map(str, args)]


def run(*args, timeout=30):
    return subprocess.run(cocoon(*args), capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


@pytest.mark.parametrize("command", [("tags",), ("tags", "watch"), ("tags", "simulate"),
                                     ("tags", "protocols")])
def test_help(command):
    out = CliRunner().invoke(cli, [*command, "--help"]).output
    assert "Usage:" in out and len(out.splitlines()) > 3


def test_watch_json_reads_and_rejected_frames(pty_pair):
    field = TagField(3, seed=4, miss_rate=0.1)
    epcs = {e.hex() for e in field.populate(10)}
    with BB7ESimulator(str(pty_pair.peer), field, rounds_per_s=20) as sim:
        proc = subprocess.Popen(
            cocoon("tags", "watch", "--port", pty_pair.device, "--protocol", "bb7e", "--json",
                   "--count", 100, "--seconds", 20),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        wait_for(lambda: sim.commands, 10, what="multi-poll from the watcher")
        sim.inject(b"\x01\x02\x03" + NOTICE[:-2] + b"\x00\x7e")   # noise, a bad checksum
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    reads = [x for x in lines if "epc" in x]
    assert len(reads) == 100
    assert {r["epc"] for r in reads} <= epcs
    assert {r["antenna"] for r in reads} == {1, 2, 3}
    assert all(isinstance(r["rssi"], int) and -100 <= r["rssi"] <= -20 for r in reads)
    errors = [x for x in lines if "error" in x]
    assert {e["error_type"] for e in errors} >= {"GarbageError", "ChecksumError"}
    bad = next(e for e in errors if e["error_type"] == "ChecksumError")
    assert bad["raw"] == (NOTICE[:-2] + b"\x00\x7e").hex() and "checksum 00" in bad["error"]
    assert lines.index(next(x for x in lines if "health" in x)) < lines.index(reads[0])
    assert next(x for x in lines if "health" in x)["health"] == "online"


def test_watch_text_and_a_reader_that_stops_answering(pty_pair):
    field = TagField(1, seed=1)
    field.add("e2801170000002000000abcd", 1, -48)
    with BB7ESimulator(str(pty_pair.peer), field, rounds_per_s=50, antenna_byte=False) as sim:
        proc = subprocess.Popen(
            cocoon("tags", "watch", "--port", pty_pair.device, "--protocol", "bb7e",
                   "--antenna", 7, "--silence", 0.5, "--seconds", 2),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        first = proc.stdout.readline()
        sim.hang()
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert first.startswith("e2801170000002000000abcd") and "antenna 7" in first
    assert " dBm " in first
    assert "online" in err and "offline (no answer from the module" in err


def test_simulate_command_feeds_watch(pty_pair):
    sim = subprocess.Popen(cocoon("tags", "simulate", "--port", pty_pair.peer, "--tags", 8,
                                  "--antennas", 2, "--rate", 40),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           cwd=ROOT)
    try:
        proc = run("tags", "watch", "--port", pty_pair.device, "--protocol", "bb7e", "--json",
                   "--count", 40, "--seconds", 20)
    finally:
        sim.terminate()
        sim.wait(10)
    assert proc.returncode == 0, proc.stderr
    reads = [json.loads(line) for line in proc.stdout.splitlines() if '"epc"' in line]
    assert len(reads) == 40 and {r["antenna"] for r in reads} == {1, 2}


def test_unknown_port_scheme_is_reported_not_a_traceback():
    proc = run("tags", "watch", "--port", "nonsense://x", "--protocol", "bb7e", "--json",
               "--seconds", 1)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    [health] = [json.loads(line) for line in proc.stdout.splitlines()]
    assert health["health"] == "offline" and "cannot use nonsense://x" in health["detail"]


def test_watch_llrp_reader():
    from tests.support.llrp_sim import LLRPSimulator

    f = TagField(2, seed=9)
    epcs = {e.hex() for e in f.populate(6)}
    with LLRPSimulator(f) as sim:
        proc = run("tags", "watch", "--port", sim.url, "--protocol", "llrp", "--json",
                   "--count", 30, "--seconds", 20)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    reads = [x for x in lines if "epc" in x]
    assert len(reads) == 30 and {r["epc"] for r in reads} <= epcs
    assert {r["antenna"] for r in reads} == {1, 2}
    assert lines[0]["health"] == "online"

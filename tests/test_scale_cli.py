"""`cocoon-agent scale watch`, run as a technician runs it: a subprocess on a pty with a
simulated indicator on the other end."""

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from drivers.scale.sim_model import WeightModel
from drivers.scale.simulator import Simulator

pytest_plugins = ("tests.support.pty",)
ROOT = Path(__file__).resolve().parent.parent


def cocoon(*args):
    return [sys.executable, "-m", "agent.cli.main", *map(str, args)]


def watch(pair, protocol, *args):
    """Start `scale watch --json`; return the process once it reports the port open."""
    proc = subprocess.Popen(
        cocoon("scale", "watch", "--port", pair.device, "--protocol", protocol, "--json",
               "--seconds", 15, *args),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    first = json.loads(proc.stdout.readline() or "{}")
    assert first.get("link") == "open", (first, proc.stderr.read() if proc.poll() else "")
    return proc


def finish(proc):
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("command", [("scale",), ("scale", "watch"), ("scale", "protocols")])
def test_help(command):
    out = subprocess.run(cocoon(*command, "--help"), capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert "Usage:" in out and len(out.splitlines()) > 3


def test_protocols_are_listed():
    out = subprocess.run(cocoon("scale", "protocols"), capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert "xk3190-a9?unit=kg&address=A&mode=continuous" in out and "mt-sics" in out


def test_watch_json_infers_stability_and_reports_rejected_frames(pty_pair):
    sim = Simulator(str(pty_pair.peer), "xk3190-a9", WeightModel(settle_s=0.1), rate_hz=40)
    with sim.start():  # before the watcher: opening a port flushes what waits in it
        proc = watch(pty_pair, "xk3190-a9", "--count", 30, "--stable-count", 3)
        sim.inject(b"\x02+0012342" + b"99\x03")  # a frame with a wrong check
        sim.set_target("12.34")
        lines = finish(proc)
    readings = [x for x in lines if "weight" in x]
    errors = [x for x in lines if "error" in x]
    assert len(readings) + len(errors) == 30
    assert errors[0]["error_type"] == "ChecksumError" and "check is 99" in errors[0]["error"]
    assert all(isinstance(x["stable"], bool) for x in readings)
    stable = [x for x in readings if x["stable"]]
    assert stable and stable[-1]["weight"] == "12.34" and stable[-1]["unit"] == "kg"
    assert stable[-1]["stable_source"] == "inferred" and len(stable[-1]["digest"]) == 64


def test_watch_sends_commands_and_checks_sales(pty_pair):
    sim = Simulator(str(pty_pair.peer), "mt-sics", WeightModel(settle_s=0.0), rate_hz=40,
                    power_up=False)
    with sim.start():
        sim.set_target(Decimal("0.10"))
        proc = watch(pty_pair, "mt-sics", "--send", "SIR", "--count", 8, "--division", "10")
        lines = finish(proc)
    readings = [x for x in lines if "weight" in x]
    assert len(readings) == 8 and sim.commands[0] == b"SIR"
    last = readings[-1]
    assert (last["weight"], last["stable"], last["sale_ready"]) == ("0.10", True, False)
    # A balance streaming by itself (SIR) sends net weights with no word of its tare.
    assert last["refusals"] == ["net_without_tare", "below_minimum"]
    assert last["kind"] == "net" and last["tare"] is None


def test_watch_asks_a_balance_that_speaks_only_when_asked(pty_pair):
    """MT-SICS answers only when asked: without --send the watcher polls it by itself."""
    sim = Simulator(str(pty_pair.peer), "mt-sics", WeightModel(settle_s=0.0), rate_hz=40,
                    power_up=False)
    with sim.start():
        sim.set_target(Decimal("2.50"))
        proc = watch(pty_pair, "mt-sics", "--count", 5)
        lines = finish(proc)
    readings = [x for x in lines if "weight" in x]
    assert len(readings) == 5 and readings[-1]["weight"] == "2.50"
    # Asked as the station asks: the tare it holds (TA), then the weight (SI).
    assert set(sim.commands) == {b"TA", b"SI"}
    assert (readings[-1]["kind"], readings[-1]["gross"], readings[-1]["tare"]) == (
        "gross", "2.50", "0.00")


def test_watch_refuses_an_unknown_protocol():
    proc = subprocess.run(cocoon("scale", "watch", "--port", "loop://", "--protocol", "nope",
                                 "--seconds", 1), capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "unknown scale protocol 'nope'" in proc.stderr

"""`cocoon-agent station` leaves at once on SIGTERM and on Ctrl-C, without a line on its input,
and no process of the station (the console, the screen, the link process) prints a traceback
on the way out."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from agent.contract.signing import Ed25519Signer
from drivers.scale.sim_model import WeightModel
from drivers.scale.simulator import Simulator
from tests.support.running import BIN, add_device
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.pty",)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGTERM-again", "Ctrl-C"])
def test_the_station_console_stops_at_once_and_quietly(site, pty_pair, tmp_path, pcscd, how):
    issuer = tmp_path / "issuer.pem"
    issuer.write_bytes(Ed25519Signer.generate().public_key_pem())
    pty = pty_pair.plug()
    sim = Simulator(str(pty.peer), "xk3190-a9", WeightModel(), rate_hz=20).start()
    config = add_device(site, "station-01", station={},
                        card={"reader": "00 00", "issuer_public_key_file": str(issuer)},
                        scale={"port": str(pty.device), "protocol": "xk3190-a9",
                               "capacity_g": "150000"},
                        screen={"port": 0})
    proc = subprocess.Popen([str(BIN / "cocoon-agent"), "--config", str(config), "station"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    out: list[str] = []
    err: list[str] = []
    for stream, lines in ((proc.stdout, out), (proc.stderr, err)):
        threading.Thread(target=lambda s=stream, b=lines: b.extend(s), daemon=True).start()
    try:
        wait_for(lambda: any(line.startswith("step:   idle") for line in out), 30,
                 what="the station's screen")
        wait_for(lambda: any("screen: serving" in line for line in err), 10,
                 what="the screen served")
        time.sleep(1.0)                                  # a few redraws, a heartbeat or two
        started = time.monotonic()
        if how == "Ctrl-C":
            os.killpg(proc.pid, signal.SIGINT)           # the terminal's whole process group
        else:
            proc.send_signal(signal.SIGTERM)             # as systemd stops it
        code = proc.wait(timeout=10)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sim.stop()
    time.sleep(0.2)                                      # the readers drain the pipes
    stderr = "".join(err)
    assert code == 0, stderr[-3000:]
    assert took < 5, f"took {took:.1f} s to stop"
    for words in ("Traceback", "ProgrammingError", "KeyboardInterrupt", "Exception"):
        assert words not in stderr, stderr[-3000:]

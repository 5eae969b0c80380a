"""The README's main job runs end to end: a complete station on simulated hardware (pcscd with
virtual cards, a pty scale), the broker, the ingest, and a scripted clerk."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest


def test_demo_records_purchases_that_the_ingest_verifies_and_acknowledges(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "agent.demo.station", "--dir", str(tmp_path / "demo"),
         "--sales", "2", "--interval", "0.2", "--duration", "90", "--exit-when-acknowledged"],
        capture_output=True, text=True, timeout=150)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert re.search(r"^screen  : http://127\.0\.0\.1:[0-9]+/", out, re.M)
    assert "verified station-01 seq 1 agent.started" in out
    seqs = [int(s) for s in re.findall(r"verified station-01 seq (\d+) purchase.recorded", out)]
    assert len(seqs) == 2
    acked = max(int(s) for s in re.findall(r"acked    station-01 up to seq (\d+)", out))
    assert acked >= max(seqs)
    assert "clerk :  sale recorded, voucher station-01-" in out
    assert "purchases recorded this run: 2" in out
    # the final status table shows the device, nothing rejected
    status, *purchases = [line.split() for line in out.splitlines()
                          if line.startswith("station-01 ")]
    assert int(status[-2]) == 0  # rejected
    # ... and the bank recomputed both purchases to the station's amounts
    assert [(row[-3], row[-2], row[-1]) for row in purchases] == [
        (row[-4], "match", "unpaid") for row in purchases]
    assert len(purchases) == 2
    assert (tmp_path / "demo" / "vouchers.escpos").stat().st_size > 0


@pytest.mark.parametrize("after_s", [0.3, 1.0, 2.0])
def test_a_ctrl_c_early_in_the_demo_stops_everything_without_a_traceback(tmp_path, after_s):
    """Ctrl-C reaches the terminal's whole process group while the demo is starting (the
    agent coming up, the clerk signing in, the first sale)."""
    root = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.demo.station", "--dir", str(root), "--sales", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        seen = []
        for line in proc.stdout:                     # until the screen is announced
            seen.append(line)
            if line.startswith("screen  :"):
                break
        time.sleep(after_s)
        os.killpg(proc.pid, signal.SIGINT)
        out = "".join(seen) + proc.stdout.read()
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    logs = "".join(p.read_text(errors="replace") for p in (root / "logs").glob("*.log"))
    assert code == 0, out
    for words in ("Traceback", "KeyboardInterrupt", "no PC/SC context"):
        assert words not in out and words not in logs, out + logs

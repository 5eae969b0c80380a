"""The README's main job runs end to end: a complete station on simulated hardware (pcscd with
virtual cards, a pty scale), the broker, the ingest, and a scripted clerk."""

import re
import subprocess
import sys


def test_demo_records_purchases_that_the_ingest_verifies_and_acknowledges(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "agent.demo.station", "--dir", str(tmp_path / "demo"),
         "--sales", "2", "--interval", "0.2", "--duration", "90", "--exit-when-acknowledged"],
        capture_output=True, text=True, timeout=150)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
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

"""The README's main job runs end to end: broker, ingest and a simulated station."""

import subprocess
import sys


def test_demo_shows_verified_and_acknowledged_events(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "agent.demo", "--dir", str(tmp_path / "demo"), "--duration", "6",
         "--interval", "0.5"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "verified station-01 seq 1 agent.started" in out
    assert "scale.reading" in out and "acked    station-01 up to seq" in out
    # the final status table shows the device acknowledged, nothing rejected
    last = [line for line in out.splitlines() if line.startswith("station-01")][-1].split()
    assert int(last[-2]) == 0  # rejected

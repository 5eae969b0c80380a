"""The warehouse demo runs end to end: a simulated UHF module on a pty, mock pins and the
simulated SHT3x, the broker, the ingest and the agent as processes; a lot is received and
pledged by the bank, a pledged bale leaves without a release, and the custody.breach alert
arrives at the ingest signed and acknowledged."""

import re
import sqlite3
import subprocess
import sys
from contextlib import closing

from agent.contract.chain import check_capture
from agent.contract.signing import Verifier

DEV = "warehouse-01"


def run_demo(root):
    return subprocess.run(
        [sys.executable, "-m", "agent.demo.warehouse", "--dir", str(root), "--duration", "90",
         "--exit-when-acknowledged"], capture_output=True, text=True, timeout=150)


def test_demo_warehouse_breach_arrives_signed_and_acknowledged(tmp_path):
    root = tmp_path / "demo"
    proc = run_demo(root)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/", out, re.M), out
    verified = {int(s): t for s, t in re.findall(rf"verified {DEV} seq (\d+) (\S+)", out)}
    (received,) = [s for s, t in verified.items() if t == "lot.received"]
    (done,) = [s for s, t in verified.items() if t == "command.done"]
    (breach,) = [s for s, t in verified.items() if t == "custody.breach"]
    assert received < done < breach
    assert sum(1 for t in verified.values() if t == "tag.arrived") >= 9
    acked = max(int(s) for s in re.findall(rf"acked    {DEV} up to seq (\d+)", out))
    assert acked >= breach
    lot = re.search(r"store :  6 bales of (LOT-\S+) are brought", out).group(1)
    stolen = re.search(rf"bale (e280[0-9a-f]{{20}}) of {lot} is carried out", out).group(1)
    assert (f"custody.breach seq {breach} verified (signed by {DEV}) and acknowledged: "
            f"bale {stolen} of lot {lot} under pledge P-{lot}") in out
    assert f"custody.breach seq {breach} verified and acknowledged by the ingest" in out
    last = [line for line in out.splitlines() if line.startswith(DEV)][-1].split()
    assert int(last[-2]) == 0  # nothing rejected

    # The ingest's copy checks out against the device's key alone: every signature, no gap.
    with closing(sqlite3.connect(root / "ingest" / "ingest.sqlite")) as conn:
        rows = conn.execute("SELECT payload FROM events WHERE device=? ORDER BY seq",
                            (DEV,)).fetchall()
    payloads = [r[0] if isinstance(r[0], str) else r[0].decode() for r in rows]
    report = check_capture(payloads, Verifier.from_file(root / "ingest" / "devices"
                                                        / f"{DEV}.pem"))
    assert report.ok, report.problems
    assert len(payloads) >= breach

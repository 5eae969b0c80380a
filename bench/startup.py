"""Start-up of a command: wall time and peak RSS of `cocoon-agent --config F queue`.

    .venv/bin/python bench/startup.py [--runs 10] [--against DIR]

F is a station's configuration with every station section, [update] and [metrics] (and a
second one without [metrics]), written to a temporary folder with a fresh signing key. Each
figure is the median of `--runs` runs. `--against DIR` runs the same command from the source
tree in DIR (a checkout of another version, e.g. `git worktree add /tmp/before HEAD~1`) as the
baseline, interleaved run by run with this tree so that both see the same machine; without it
the baseline is the interpreter alone (`python -c pass`). Both trees are byte-compiled first,
as an installed package is.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

STATION = """\
[device]
id = "station-01"
data_dir = "data"
heartbeat_interval_s = 30

[mqtt]
host = "127.0.0.1"
ca_file = "ca.pem"
cert_file = "device.pem"
key_file = "device.key"

[keys]
ingest_public_key_file = "ingest.pem"

[station]
timezone = "Asia/Shanghai"

[card]
issuer_public_key_file = "issuer.pem"

[scale]
port = "/dev/ttyUSB0"
protocol = "xk3190-a9"
division_g = "50"
capacity_g = "150000"

[printer]
url = "dummy://"

[signals]
status_light = 17
buzzer = 27

[update]
keep_releases = 3
"""
METRICS = '\n[metrics]\nlisten = "127.0.0.1:9464"\n'


def command(tree: Path | None, config: Path) -> tuple[list[str], dict]:
    env = dict(os.environ)
    if tree is None:
        return [sys.executable, "-c", "pass"], env
    env["PYTHONPATH"] = str(tree)
    code = ("import sys; from agent.cli.main import main; "
            f"sys.argv = ['cocoon-agent', '--config', {str(config)!r}, 'queue']; main()")
    return [sys.executable, "-c", code], env


def once(argv: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one run."""
    start = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=[
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
    _, status, usage = os.wait4(pid, 0)
    took = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv[:2])}: exit status {status}")
    return took, usage.ru_maxrss / 1024


def measure(trees: dict[str, Path | None], config: Path, runs: int) -> dict[str, tuple]:
    samples: dict[str, list] = {name: [] for name in trees}
    for _ in range(runs):
        for name, tree in trees.items():
            samples[name].append(once(*command(tree, config)))
    return {name: (statistics.median(t for t, _ in s) * 1000,
                   statistics.median(r for _, r in s)) for name, s in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--against", type=Path, help="a checkout of another version")
    args = parser.parse_args()
    trees: dict[str, Path | None] = {
        "baseline": args.against.resolve() if args.against else None, "this tree": HERE}
    for tree in filter(None, trees.values()):
        for package in ("agent", "drivers", "firmware_bridge", "ingest"):
            compileall.compile_dir(tree / package, quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.chdir(folder)   # `python -c` puts the working folder first on sys.path
        (folder / "data").mkdir()
        with_metrics, without = folder / "station.toml", folder / "station-no-metrics.toml"
        with_metrics.write_text(STATION + METRICS)
        without.write_text(STATION)
        argv, env = command(HERE, with_metrics)
        subprocess.run([sys.executable, "-m", "agent.cli.main", "--config", str(with_metrics),
                        "keygen"], env=env, check=True, capture_output=True)
        print(f"start-up of `cocoon-agent --config F queue`, median of {args.runs} runs "
              f"(baseline: {args.against or 'python -c pass'})")
        for label, config in (("F with [metrics]", with_metrics), ("F without [metrics]",
                                                                    without)):
            figures = measure(trees, config, args.runs)
            (base_ms, base_rss), (ms, rss) = figures["baseline"], figures["this tree"]
            print(f"  {label:<20} baseline {base_ms:6.1f} ms {base_rss:5.1f} MiB   "
                  f"this tree {ms:6.1f} ms ({(ms / base_ms - 1) * 100:+.1f} %) "
                  f"{rss:5.1f} MiB ({rss - base_rss:+.1f} MiB)")


if __name__ == "__main__":
    main()

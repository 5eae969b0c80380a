"""The house rules of docs/architecture.md: the greps it lists, and the seams they stand for,
checked by importing each package with what it must not use blocked.

Both checks are also run against a scratch copy of the tree with a violation planted in it,
so that a check that could never fail would be noticed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEAMS = Path(__file__).resolve().parent / "support" / "seams.py"
PACKAGES = ("agent", "drivers", "firmware_bridge", "ingest")

# (package, what it may import of the project besides itself): docs/architecture.md's table.
RULES = [
    ("drivers", ()),
    ("firmware_bridge", ("drivers", "agent.contract")),
    ("ingest", ("agent.contract", "agent.link.mqtt", "agent.link.common")),
    ("agent.contract", ()),
    ("agent.contract.pricing", ("agent.contract.errors", "agent.contract.canonical")),
]


def house_rules(root: Path = ROOT) -> list[tuple[str, str]]:
    """(what the rule says, its command) for each rule of the house-rules block."""
    text = (root / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = re.search(r"## House rules.*?```sh\n(.*?)```", text, re.S).group(1)
    rules, said = [], ""
    for line in block.splitlines():
        if line.startswith("#"):
            said = line.lstrip("# ")
        elif line.strip():
            rules.append((said, line))
    return rules


def run_rule(command: str, root: Path) -> str:
    proc = subprocess.run(["sh", "-c", command], cwd=root, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode in (0, 1), proc.stderr  # grep: 1 = nothing found; >1 = error
    return proc.stdout


def check_seam(root: Path, package: str, allowed: tuple[str, ...]) -> list[dict]:
    proc = subprocess.run([sys.executable, str(SEAMS), str(root), package, *allowed],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])["violations"]


def test_the_architecture_page_lists_the_rules_the_issue_names():
    said = " ".join(s for s, _ in house_rules())
    for words in ("drivers/ imports nothing", "firmware_bridge/ imports", "ingest/ imports",
                  "paho", "pyserial", "gpiozero", "pyscard", "native-or-co-processor",
                  "outbox"):
        assert words in said


@pytest.mark.parametrize("said,command", house_rules(), ids=[s for s, _ in house_rules()])
def test_house_rule_holds(said, command):
    assert run_rule(command, ROOT) == "", f"broken: {said}"


@pytest.mark.parametrize("package,allowed", RULES, ids=[p for p, _ in RULES])
def test_package_imports_nothing_it_must_not_even_lazily(package, allowed):
    assert check_seam(ROOT, package, allowed) == []


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """A scratch copy of the packages and docs, with a lazy, a dynamic and a top-level
    violation planted: the drivers reach into the outbox, the ingest into the station."""
    root = tmp_path_factory.mktemp("house")
    for name in (*PACKAGES, "docs"):
        shutil.copytree(ROOT / name, root / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    with open(root / "drivers" / "errors.py", "a", encoding="utf-8") as fh:
        fh.write("\n\ndef _sneaky():\n    from agent.spine import outbox\n    return outbox\n")
    with open(root / "ingest" / "registry.py", "a", encoding="utf-8") as fh:
        fh.write("\n\ndef _dynamic():\n    import importlib\n"
                 "    return importlib.import_module('agent.station.sales')\n")
    with open(root / "firmware_bridge" / "frames.py", "a", encoding="utf-8") as fh:
        fh.write("\nimport serial  # noqa\n")
    return root


def test_a_planted_violation_breaks_the_greps(planted):
    broken = {said for said, command in house_rules(planted) if run_rule(command, planted)}
    assert any("drivers/ imports nothing" in s for s in broken)
    assert any("pyserial" in s for s in broken)


def test_a_planted_violation_breaks_the_import_check(planted):
    drivers = check_seam(planted, "drivers", ())
    assert {(v["module"], v["imports"]) for v in drivers} >= {("drivers.errors", "agent.spine")}
    ingest = check_seam(planted, "ingest", RULES[2][1])
    # the grep cannot see a dynamic import; the import check does
    assert ("ingest.registry", "agent.station.sales") in {(v["module"], v["imports"])
                                                          for v in ingest}

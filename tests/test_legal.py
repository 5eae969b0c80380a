"""Software identification and the audit trail of the legally relevant part (WELMEC 7.2 /
OIML R76 5.5.1): the manifest is closed under imports, `--version` says `legal <sha256>`
computed over exactly the manifest's files, and a change of them (or of the legal
parameters) is recorded with a counter that never goes back, holding sales until a
supervisor acknowledges a software change."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from agent.contract.legal import MANIFEST, legal_id, manifest_paths
from agent.station import purchase as p
from agent.station.legal import LegalRecord, legal_parameters
from agent.station.purchase import Farmer, PurchaseFlow, Staff

pytest_plugins = ("tests.support.pty",)
ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("agent", "drivers", "firmware_bridge", "ingest")


def _module_file(name: str) -> Path | None:
    for candidate in (ROOT / (name.replace(".", "/") + ".py"),
                      ROOT / name.replace(".", "/") / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_files(path: Path) -> set[Path]:
    """The project's files that importing `path` runs: every import statement anywhere in it
    (those inside functions too), and the packages (`__init__.py`) on the way."""
    package = path.relative_to(ROOT).parent.parts
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[:len(package) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    files = set()
    for name in names:
        parts = name.split(".")
        if parts[0] not in PROJECT:
            continue
        for i in range(1, len(parts) + 1):
            found = _module_file(".".join(parts[:i]))
            if found is not None:
                files.add(found)
    return files


def test_the_manifest_holds_every_module_its_files_import():
    listed = set(manifest_paths())
    assert manifest_paths() == sorted(manifest_paths()), "keep the manifest sorted"
    missing = {}
    for path in listed:
        if path.endswith(".py"):
            for dep in _imported_files(ROOT / path):
                rel = dep.relative_to(ROOT).as_posix()
                if rel not in listed:
                    missing.setdefault(rel, []).append(path)
    assert not missing, f"imported by legally relevant files, missing from {MANIFEST.name}: " \
                        f"{missing}"


def test_the_manifest_names_the_legally_relevant_part():
    listed = set(manifest_paths())
    for part in ("drivers/scale/sale.py", "drivers/scale/toledo.py", "agent/station/weighing.py",
                 "agent/contract/pricing/amount.py", "agent/contract/pricing/money.py",
                 "agent/station/purchase.py", "agent/contract/events.py",
                 "agent/contract/signing.py", "agent/contract/legal.py"):
        assert part in listed


def test_version_prints_the_legal_identification_that_sha256sum_gives():
    out = subprocess.run([sys.executable, "-m", "agent.cli", "--version"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith("cocoon-agent ") and out[1].startswith("legal ")
    listing = subprocess.run(["sha256sum", *manifest_paths()], cwd=ROOT, capture_output=True,
                             check=True).stdout
    shell = subprocess.run(["sha256sum"], input=listing, capture_output=True,
                           check=True).stdout.split()[0].decode()
    assert out[1] == f"legal {shell}" == f"legal {legal_id()}"


@pytest.fixture
def copied_install(tmp_path) -> Path:
    top = tmp_path / "install"
    for package in PROJECT:
        shutil.copytree(ROOT / package, top / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return top


def _version_of(top: Path) -> str:
    return subprocess.run([sys.executable, "-m", "agent.cli", "--version"], cwd=top,
                          env={"PYTHONPATH": str(top), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, check=True).stdout.splitlines()[1]


def test_a_change_to_a_relevant_file_shows_and_one_elsewhere_does_not(copied_install):
    top = copied_install
    before = _version_of(top)
    assert before == f"legal {legal_id()}"
    with (top / "agent/warehouse/alerts.py").open("a") as fh:
        fh.write("# an edit outside the legally relevant part\n")
    assert _version_of(top) == before
    with (top / "drivers/scale/sale.py").open("a") as fh:
        fh.write("# an edit of the weighing rules\n")
    after = _version_of(top)
    assert after != before and after == f"legal {legal_id(top, top / MANIFEST.relative_to(ROOT))}"


SCALE = type("Scale", (), {"protocol": "xk3190-a9", "scale_id": "bench-1",
                           "division_g": Decimal(20), "min_divisions": 20,
                           "capacity_g": Decimal(150000), "tare_g": 600, "stable_count": 5,
                           "stable_window_s": 1.0})


def _events(outbox, type_prefix="legal."):
    rows = outbox.read("SELECT payload FROM events ORDER BY seq")
    events = [json.loads(row[0]) for row in rows]
    return [(e["type"], e["body"]) for e in events if e["type"].startswith(type_prefix)]


def test_a_software_change_holds_sales_until_a_supervisor_acknowledges_it(
        make_outbox, copied_install):
    outbox = make_outbox(device="station-01")
    first = LegalRecord(outbox, legal_id(), legal_parameters(SCALE, []))
    assert first.check() == ["legal.identified"] and not first.hold
    assert LegalRecord(outbox, legal_id(), legal_parameters(SCALE, [])).check() == []

    # The installation's weighing code was edited: its identification changes.
    with (copied_install / "drivers/scale/sale.py").open("a") as fh:
        fh.write("MINIMUM = 0\n")
    edited = legal_id(copied_install, copied_install / MANIFEST.relative_to(ROOT))
    record = LegalRecord(outbox, edited, legal_parameters(SCALE, []))
    assert record.check() == ["legal.software_changed"] and record.hold

    flow = PurchaseFlow("station-01", legal=edited, legal_hold=record.hold)
    flow.handle(p.StaffCard(Staff("s-01", "Clerk Li", "clerk")), 0)
    refused = flow.handle(p.FarmerCard(Farmer("04a1", "cpu", "F-1", "Zhang", "acct", 1)), 0)
    assert refused[0].key == "legal_hold" and flow.phase is p.Phase.READY
    (ack,) = flow.handle(p.StaffCard(Staff("s-09", "Supervisor Wang", "supervisor")), 0)
    assert ack == p.AcknowledgeLegal("s-09")
    record.acknowledge("s-09")
    flow.handle(p.LegalAcknowledged("s-09"), 0)
    assert not flow.legal_hold and not record.hold
    # ... and a restart with the same software records and holds nothing.
    again = LegalRecord(outbox, edited, legal_parameters(SCALE, []))
    assert again.check() == [] and not again.hold

    events = _events(outbox)
    assert [t for t, _ in events] == ["legal.identified", "legal.software_changed",
                                      "legal.acknowledged"]
    assert [b["counter"] for _, b in events] == [1, 2, 3]
    assert events[1][1]["old_legal"] == legal_id() and events[1][1]["legal"] == edited
    assert events[2][1]["supervisor"] == "s-09"


def test_a_change_of_the_legal_parameters_is_recorded_with_a_counter(make_outbox):
    outbox = make_outbox(device="station-01")
    LegalRecord(outbox, legal_id(), legal_parameters(SCALE, [])).check()
    edited = replace_scale(division_g=Decimal(50))
    record = LegalRecord(outbox, legal_id(), legal_parameters(edited, []))
    assert record.check("start") == ["legal.parameters_changed"] and not record.hold
    (_, identified), (_, changed) = _events(outbox)
    assert changed["changed"] == ["scale.division_g"] and changed["counter"] == 2
    assert changed["parameters"]["scale"]["division_g"] == "50"
    assert changed["old_hash"] == identified["parameters_hash"] != changed["new_hash"]
    # The counter never goes back: it is read from the outbox at every start.
    again = LegalRecord(outbox, legal_id(), legal_parameters(SCALE, []))
    again.check()
    assert _events(outbox)[-1][1]["counter"] == 3


def replace_scale(**changes):
    values = {k: getattr(SCALE, k) for k in ("protocol", "scale_id", "division_g",
                                             "min_divisions", "capacity_g", "tare_g",
                                             "stable_count", "stable_window_s")}
    return type("Scale", (), {**values, **changes})


def test_every_purchase_records_the_legal_identification():
    flow = PurchaseFlow("station-01", legal="ab" * 32)
    flow.handle(p.StaffCard(Staff("s-01", "Clerk Li", "clerk")), 0)
    flow.handle(p.FarmerCard(Farmer("04a1", "cpu", "F-1", "Zhang", "acct", 1)), 0)
    weighing = p.Weighing("bench-1", 10_600, 600, 10_000, True, True, "", "d" * 64,
                          tare_source="configured",
                          instrument={"protocol": "xk3190-a9", "division_g": "20",
                                      "min_g": "400", "max_g": "150000"})
    flow.handle(p.ScaleUpdate(weighing), 0)
    flow.handle(p.Graded(p.Priced("A", Decimal("40.1"), Decimal("401.00"), {},
                                  chosen_by="trusted")), 0)
    (record,) = flow.handle(p.Confirm(), 0)
    body = record.body
    assert body["legal"] == "ab" * 32 and body["table_chosen_by"] == "trusted"
    assert {k: body["scale"][k] for k in ("protocol", "division_g", "min_g", "max_g",
                                          "tare_source")} == {
        "protocol": "xk3190-a9", "division_g": "20", "min_g": "400", "max_g": "150000",
        "tare_source": "configured"}


def test_a_local_edit_of_the_scale_settings_is_found_at_the_next_start(site, services,
                                                                       pty_pair, tmp_path):
    """The real agent and its outbox: a technician edits [scale] division_g in agent.toml
    while the station is stopped; at its next start the station records
    legal.parameters_changed, its counter one above the last."""
    from agent.contract.signing import Ed25519Signer
    from agent.station.part import StationPart
    from tests.support.running import add_device
    from tests.support.waiting import wait_for

    issuer = tmp_path / "issuer.pem"
    issuer.write_bytes(Ed25519Signer.generate().public_key_pem())
    config = add_device(site, "station-01", station={},
                        card={"reader": "00 00", "issuer_public_key_file": str(issuer),
                              "auth": "none"},
                        scale={"port": str(pty_pair.device), "protocol": "toledo",
                               "division_g": "10", "capacity_g": "150000"})

    def legal_events(running):
        rows = running.outbox.read("SELECT payload FROM events WHERE type LIKE 'legal.%' "
                                   "ORDER BY seq")
        return [json.loads(r[0]) for r in rows]

    first = services.agent(config)
    assert next(x for x in first.agent.parts if isinstance(x, StationPart))
    (identified,) = wait_for(lambda: legal_events(first), 10, what="legal.identified")
    assert identified["type"] == "legal.identified"
    assert identified["body"]["parameters"]["scale"]["division_g"] == "10"
    first.stop()
    config.write_text(config.read_text().replace('division_g = "10"', 'division_g = "20"'))
    second = services.agent(config)
    changed = wait_for(lambda: legal_events(second)[1:], 10, what="the change recorded")[-1]
    assert changed["type"] == "legal.parameters_changed"
    assert changed["body"]["changed"] == ["scale.division_g"]
    assert changed["body"]["counter"] == identified["body"]["counter"] + 1
    assert changed["body"]["source"] == "start"

"""`cocoon-agent card issue/read`, run as a technician runs them: a subprocess per command,
talking to the tests' pcscd (found through PCSCLITE_CSOCK_NAME) and a virtual card."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.contract.signing import generate_key_file, load_signer
from drivers.pcsc import farmer_card as fc
from drivers.pcsc import staff_card as sc
from tests.support.cpu_card import CpuFarmerCard
from tests.support.station_cards import HOLDER

ROOT = Path(__file__).resolve().parent.parent
READER = "00 00"


def cocoon(*args, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "agent.cli.main", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("issuer")
    generate_key_file(d / "issuer.key")
    (d / "issuer.pem").write_bytes(load_signer(d / "issuer.key").public_key_pem())
    (d / "holder.json").write_text(json.dumps(HOLDER, ensure_ascii=False))
    return d


def test_issue_then_read_a_cpu_card(keys, virtual_card):
    card = virtual_card(READER, cls=CpuFarmerCard).insert()
    out = cocoon("card", "issue", "--reader", READER, "--kind", "cpu", "--issuer-key",
                 keys / "issuer.key", "--holder", f"@{keys / 'holder.json'}").stdout
    assert "issued cpu card 8600112233445566 to Wang Xiuying" in out
    again = cocoon("card", "issue", "--reader", READER, "--kind", "cpu", "--issuer-key",
                   keys / "issuer.key", "--holder", f"@{keys / 'holder.json'}", check=False)
    assert again.returncode == 2 and "already issued" in again.stderr

    card.files[fc.SFI_SALES].records.insert(0, fc.build_sale({
        "date": "2026-11-28", "voucher": "station-01-20261128-0001", "grade": "+1",
        "net_g": 52_000, "unit_price": "39.30", "amount": "2043.60"}, 1))
    card.files[fc.SFI_COUNTER].data[:] = (1).to_bytes(4, "big")
    report = json.loads(cocoon("card", "read", "--reader", READER, "--issuer-public-key",
                               keys / "issuer.pem", "--json").stdout)
    assert report["signature_valid"] is True and report["kind"] == "cpu"
    assert report["holder"] == HOLDER and report["counter"] == 1
    assert report["sales"][0]["voucher"] == "station-01-20261128-0001"
    text = cocoon("card", "read", "--reader", READER, "--issuer-public-key",
                  keys / "issuer.pem").stdout
    assert "issuer signature: valid" in text and "52.000 kg" in text


def test_read_reports_a_forged_card_with_exit_status_1(keys, virtual_card):
    other = keys / "other.key"
    if not other.exists():
        generate_key_file(other)
    card = virtual_card(READER, cls=CpuFarmerCard).insert()
    cocoon("card", "issue", "--reader", READER, "--kind", "cpu", "--issuer-key", other,
           "--holder", json.dumps(HOLDER))
    proc = cocoon("card", "read", "--reader", READER, "--issuer-public-key",
                  keys / "issuer.pem", "--json", check=False)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["signature_valid"] is False and "forged" in report["refusal"]
    assert card.inserted


def test_bad_input_is_refused_before_the_card_is_touched(keys, virtual_card):
    card = virtual_card(READER, cls=CpuFarmerCard).insert()
    bad = cocoon("card", "issue", "--reader", READER, "--kind", "cpu", "--issuer-key",
                 keys / "issuer.key", "--holder", json.dumps({**HOLDER, "labour": "three"}),
                 check=False)
    assert bad.returncode == 2 and "labour" in bad.stderr
    assert card.commands == []
    missing = cocoon("card", "read", "--reader", "no such reader", "--issuer-public-key",
                     keys / "issuer.pem", check=False)
    assert missing.returncode == 2 and "no such reader" in missing.stderr


def test_issue_a_staff_card(keys, virtual_card):
    card = virtual_card(READER, cls=CpuFarmerCard, aid=sc.STAFF_AID,
                        serial=bytes.fromhex("5300000000000001")).insert()
    out = cocoon("card", "issue-staff", "--reader", READER, "--issuer-key", keys / "issuer.key",
                 "--staff", json.dumps({"staff_id": "S-01", "name": "Zhao", "role": "supervisor"})
                 ).stdout
    assert "issued staff card 5300000000000001 to Zhao (S-01, supervisor)" in out
    values, _ = sc.parse_staff(card.files[fc.SFI_HOLDER].records[0])
    assert values["role"] == "supervisor"

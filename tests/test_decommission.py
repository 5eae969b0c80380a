"""`cocoon-agent decommission`: wipe only a fully acknowledged device; with --discard, first
record what is lost (a signed event and a summary file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli.main import cli
from agent.config import load_config
from agent.contract.envelope import parse_json_object, verify_object
from agent.contract.events import Draft
from agent.contract.signing import Ed25519Signer, Verifier, load_signer
from agent.demo.devpki import LocalCA
from agent.fleet.decommission import EVENT_TYPE, DecommissionRefused, decommission
from agent.fleet.provision import Plan, provision
from agent.spine.outbox import Outbox


@pytest.fixture
def device(tmp_path):
    """A provisioned device (no broker needed): its config path and config."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "ca.pem").write_bytes(LocalCA.create(tmp_path / "ca").cert_file.read_bytes())
    (bundle / "ingest.pem").write_bytes(Ed25519Signer.generate().public_key_pem())
    plan = Plan(device_id="station-31", config_file=tmp_path / "etc" / "agent.toml",
                data_dir=tmp_path / "var", broker_host="127.0.0.1", bundle=bundle)
    provision(plan)
    plan.cert_file.write_text("certificate placeholder\n")  # as after enrolment
    return plan.config_file, load_config(plan.config_file)


def record(config, drafts, *, ack_upto: int = 0) -> list[int]:
    with Outbox(config.outbox_path, device=config.device.id,
                signer=load_signer(config.device.signing_key_file)) as outbox:
        seqs = [outbox.append(d) for d in drafts]
        if ack_upto:
            outbox.acknowledge(ack_upto, outbox.event_hash(ack_upto))
    return seqs


DRAFTS = [Draft("purchase.recorded", "money", {"amount": "12.50"}),
          Draft("door.opened", "alert", {"door": "main"}),
          Draft("purchase.recorded", "money", {"amount": "7.00"})]


def test_a_fully_acknowledged_device_is_wiped(device, tmp_path):
    _, config = device
    seqs = record(config, DRAFTS, ack_upto=3)
    report = decommission(config, summary_dir=tmp_path / "usb")
    assert report.acked_seq == seqs[-1] and not report.discarded
    for key in (config.device.signing_key_file, config.mqtt.key_file, config.mqtt.cert_file):
        assert not key.exists()
    assert list(config.device.data_dir.iterdir()) == []      # the directory itself stays
    summary = json.loads(report.summary_file.read_text())
    assert summary["acked_seq"] == 3 and "discarded" not in summary
    assert str(config.outbox_path) in summary["wiped"]
    assert config.path.exists()                              # configuration kept


def test_unacknowledged_events_stop_it_and_nothing_is_wiped(device, tmp_path):
    _, config = device
    record(config, DRAFTS, ack_upto=1)
    with pytest.raises(DecommissionRefused, match=r"2 event\(s\) not yet acknowledged.*1 money"):
        decommission(config, summary_dir=tmp_path / "usb")
    assert config.device.signing_key_file.exists() and config.outbox_path.exists()
    assert not (tmp_path / "usb").exists()


def test_discard_records_what_is_lost_before_wiping(device, tmp_path):
    _, config = device
    public = Verifier.from_pem(load_signer(config.device.signing_key_file).public_key_pem())
    record(config, DRAFTS, ack_upto=1)
    report = decommission(config, discard=True, summary_dir=tmp_path / "usb")
    assert [u.seq for u in report.discarded] == [2, 3] and report.event_seq == 4
    assert not config.device.signing_key_file.exists() and not config.outbox_path.exists()
    summary = json.loads(report.summary_file.read_text())
    event = summary["event"]
    assert event["type"] == EVENT_TYPE and event["priority"] == "alert" and event["seq"] == 4
    assert event["body"]["discarded_events"] == 2 and event["body"]["by_priority"] == \
        {"alert": 1, "money": 1}
    # the event was signed with the device key (now wiped); the summary carries its public key
    key = Verifier.from_pem(summary["signing_key"]["public_key"].encode())
    assert key.kid == public.kid
    verify_object(parse_json_object(json.dumps(event).encode()), key, event.get("alg"))
    assert [m["body"]["amount"] for m in summary["money_events"]] == ["7.00"]
    assert [d["type"] for d in summary["discarded_events"]] == ["door.opened",
                                                                "purchase.recorded"]


def test_the_summary_may_not_go_where_it_would_be_wiped(device):
    _, config = device
    with pytest.raises(DecommissionRefused, match="summary would be wiped"):
        decommission(config, summary_dir=config.device.data_dir / "x")
    assert config.device.signing_key_file.exists()


def test_the_command_asks_for_confirmation_and_prints_the_summary(device, tmp_path):
    path, config = device
    record(config, DRAFTS)
    runner = CliRunner()
    base = ["--config", str(path), "decommission", "--summary-dir", str(tmp_path / "usb")]
    result = runner.invoke(cli, base)
    assert result.exit_code == 2 and "--yes" in result.output
    result = runner.invoke(cli, [*base, "--yes"])
    assert result.exit_code != 0 and config.device.signing_key_file.exists()
    result = runner.invoke(cli, [*base, "--yes", "--discard"])
    assert result.exit_code == 0, result.output
    assert "DISCARDED 3 unacknowledged event(s) (1 alert, 2 money)" in result.stdout
    assert '"type": "device.decommissioned"' in result.stdout
    assert len(list(Path(tmp_path / "usb").glob("decommission-station-31-*.json"))) == 1

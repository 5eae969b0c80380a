"""`cocoon-agent provision` into a temporary directory: keys, CSR, trust anchors, configuration;
idempotent, resumable after a stop at any step, and careful with existing identities."""

from __future__ import annotations

import dataclasses
import pwd
import stat
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.cli.main import cli
from agent.config import load_config
from agent.contract.signing import Ed25519Signer, load_signer
from agent.demo.devpki import LocalCA
from agent.fleet.provision import Plan, Provisioner, ProvisionError, provision


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return LocalCA.create(tmp_path_factory.mktemp("ca"))


def make_bundle(directory: Path, ca: LocalCA, *, names=("ingest", "backend", "bank", "issuer"))\
        -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.pem").write_bytes(ca.cert_file.read_bytes())
    for name in names:
        (directory / f"{name}.pem").write_bytes(Ed25519Signer.generate().public_key_pem())
    return directory


@pytest.fixture
def plan(tmp_path, ca) -> Plan:
    return Plan(device_id="station-07", config_file=tmp_path / "etc" / "agent.toml",
                data_dir=tmp_path / "var", broker_host="127.0.0.1", broker_port=8883,
                bundle=make_bundle(tmp_path / "bundle", ca))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_fresh_machine_gets_keys_csr_anchors_and_a_valid_configuration(plan):
    results = provision(plan)
    assert [r.outcome for r in results] == ["created"] * 5 + ["updated", "created"]
    config = load_config(plan.config_file)
    assert config.device.id == "station-07" and config.device.data_dir == plan.data_dir
    assert config.device.signing_key_file == plan.signing_key
    assert config.mqtt.host == "127.0.0.1" and config.mqtt.key_file == plan.tls_key
    assert config.keys.ingest_public_key_file == plan.keys_dir / "ingest.pem"
    assert config.keys.bank_public_key_file == plan.keys_dir / "bank.pem"
    assert mode(plan.signing_key) == 0o600 and mode(plan.tls_key) == 0o600
    assert mode(plan.data_dir) == 0o700
    assert load_signer(plan.signing_key).alg == "Ed25519"
    csr = x509.load_pem_x509_csr(plan.csr_file.read_bytes())
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "station-07"
    assert isinstance(csr.public_key().curve, ec.SECP256R1) and csr.is_signature_valid
    for name in ("ca.pem", "ingest.pem", "issuer.pem"):
        assert plan.anchor(name).read_bytes() == (plan.bundle / name).read_bytes()


def test_running_again_keeps_everything(plan):
    provision(plan)
    kid = load_signer(plan.signing_key).kid
    config_text = plan.config_file.read_text()
    again = provision(plan)
    assert {r.outcome for r in again} == {"kept"}
    assert load_signer(plan.signing_key).kid == kid
    assert plan.config_file.read_text() == config_text


@pytest.mark.parametrize("done", range(1, 7))
def test_a_run_stopped_after_any_step_is_completed_by_the_next(plan, done):
    partial = Provisioner(plan)
    for _name, step in partial.steps()[:done]:
        step()
    kid = load_signer(plan.signing_key).kid if plan.signing_key.exists() else None
    provision(plan)
    load_config(plan.config_file)
    if kid is not None:
        assert load_signer(plan.signing_key).kid == kid     # the same identity, resumed


def test_keys_are_owned_by_the_service_user(plan):
    nobody = pwd.getpwnam("nobody")
    provision(dataclasses.replace(plan, user="nobody"))
    for path in (plan.signing_key, plan.tls_key, plan.data_dir):
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)


def test_a_missing_service_user_is_reported_not_fatal(plan):
    results = provision(dataclasses.replace(plan, user="no-such-user-here"))
    assert results[0].outcome == "warning" and "does not exist" in results[0].detail


def test_another_identity_is_replaced_only_with_force(plan):
    provision(plan)
    kid = load_signer(plan.signing_key).kid
    other = dataclasses.replace(plan, device_id="station-08")
    with pytest.raises(ProvisionError, match="already has an identity.*--force"):
        provision(other)
    assert load_config(plan.config_file).device.id == "station-07"
    provision(dataclasses.replace(other, force=True))
    assert load_config(plan.config_file).device.id == "station-08"
    assert load_signer(plan.signing_key).kid != kid


def test_keys_made_outside_provisioning_count_as_an_identity(plan):
    from agent.contract.signing import generate_key_file

    generate_key_file(plan.signing_key)
    with pytest.raises(ProvisionError, match="not made by provision"):
        provision(plan)


def test_force_never_replaces_an_identity_with_recorded_events(plan, signer):
    from agent.spine.outbox import Outbox

    provision(plan)
    Outbox(plan.data_dir / "outbox.sqlite", device="station-07", signer=signer).close()
    with pytest.raises(ProvisionError, match="decommission"):
        provision(dataclasses.replace(plan, device_id="station-08", force=True))
    assert plan.signing_key.exists()


@pytest.mark.parametrize("name, content, message", [
    ("ca.pem", "leaf", "not a CA certificate"),
    ("ingest.pem", "private", "private key"),
    ("bank.pem", "garbage", "bank public key"),
    ("ingest.pem", None, "missing"),
])
def test_a_bad_bundle_is_refused_and_fixing_it_resumes(plan, ca, name, content, message):
    target = plan.bundle / name
    if content == "leaf":
        target.write_bytes(ca.issue("not-a-ca").cert_file.read_bytes())
    elif content == "private":
        target.write_bytes(Ed25519Signer.generate().private_key_pem())
    elif content == "garbage":
        target.write_text("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    else:
        target.unlink()
    with pytest.raises(ProvisionError, match=message):
        provision(plan)
    assert not plan.config_file.exists() and not plan.anchor("ca.pem").exists()
    kid = load_signer(plan.signing_key).kid
    make_bundle(plan.bundle, ca)
    if name == "ca.pem":
        target.write_bytes(ca.cert_file.read_bytes())
    provision(plan)
    assert load_signer(plan.signing_key).kid == kid
    load_config(plan.config_file)


def test_sections_added_by_hand_are_kept_with_their_comments(plan):
    provision(plan)
    text = plan.config_file.read_text()
    plan.config_file.write_text(text + "\n# demo scale\n[simulate]\nenabled = true\n")
    provision(dataclasses.replace(plan, broker_host="localhost"))
    text = plan.config_file.read_text()
    assert "# demo scale" in text and load_config(plan.config_file).simulate.enabled
    assert load_config(plan.config_file).mqtt.host == "localhost"


def test_an_invalid_configuration_is_never_written(plan):
    provision(plan)
    bad = plan.config_file.read_text() + "\n[outbox]\ncapacity_bytes = 1\n"
    plan.config_file.write_text(bad)
    with pytest.raises(ProvisionError, match="would not be valid.*capacity_bytes"):
        provision(plan)
    assert plan.config_file.read_text() == bad


def test_bad_device_ids_are_refused(plan):
    for wrong in ("Station 7", "claim", ""):
        with pytest.raises(ProvisionError, match="device id"):
            provision(dataclasses.replace(plan, device_id=wrong))


def test_the_command_line_with_flags_then_resuming_without_them(tmp_path, ca):
    bundle = make_bundle(tmp_path / "usb", ca)
    config = tmp_path / "etc" / "agent.toml"
    runner = CliRunner()
    args = ["--config", str(config), "provision", "--no-interactive"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2 and "--device-id is required" in result.output
    result = runner.invoke(cli, [*args, "--device-id", "wh-3", "--broker-host", "127.0.0.1",
                                 "--data-dir", str(tmp_path / "var"), "--bundle", str(bundle),
                                 "--signing-alg", "ES256"])
    assert result.exit_code == 0, result.output
    assert "enrol --token" in result.output
    result = runner.invoke(cli, args)            # everything comes from the earlier run
    assert result.exit_code == 0, result.output
    assert tomllib.loads(config.read_text())["device"]["signing_alg"] == "ES256"
    assert "kept" in result.output and "created" not in result.output


def _fake_users(monkeypatch, users: dict):
    """pwd.getpwnam answering for `users` (name -> a real entry to stand in for it) only."""
    def getpwnam(name):
        if name not in users:
            raise KeyError(name)
        return users[name]
    monkeypatch.setattr(pwd, "getpwnam", getpwnam)


def test_the_keys_go_to_the_service_user_by_default(tmp_path, ca, monkeypatch):
    """Without --user, a machine with the `cocoon` user (the package creates it) gets keys the
    service can read; --user still overrides it."""
    import os

    # As root, `cocoon` stands for nobody, so the owner visibly changes; otherwise for this
    # user (a process can give files only to itself).
    stand_in = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    _fake_users(monkeypatch, {"cocoon": stand_in})
    config = tmp_path / "etc" / "agent.toml"
    args = ["--config", str(config), "provision", "--no-interactive", "--device-id", "wh-3",
            "--broker-host", "127.0.0.1", "--data-dir", str(tmp_path / "var"),
            "--bundle", str(make_bundle(tmp_path / "usb", ca))]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "owner cocoon" in result.output
    for path in (tmp_path / "var", tmp_path / "var" / "device-signing.key",
                 tmp_path / "var" / "tls" / "device.key"):
        assert (path.stat().st_uid, path.stat().st_gid) == (stand_in.pw_uid, stand_in.pw_gid)

    me = pwd.getpwuid(os.geteuid())
    _fake_users(monkeypatch, {"cocoon": stand_in, "tech": me})
    result = CliRunner().invoke(cli, [*args, "--user", "tech"])
    assert result.exit_code == 0, result.output
    assert "owner tech" in result.output
    assert (tmp_path / "var" / "device-signing.key").stat().st_uid == me.pw_uid


def test_without_a_service_user_the_files_stay_with_the_current_user(tmp_path, ca,
                                                                    monkeypatch):
    from agent.fleet.provision import default_service_user

    nobody = pwd.getpwnam("nobody")
    _fake_users(monkeypatch, {})
    assert default_service_user() is None
    result = CliRunner().invoke(cli, [
        "--config", str(tmp_path / "agent.toml"), "provision", "--no-interactive",
        "--device-id", "wh-3", "--broker-host", "127.0.0.1", "--data-dir",
        str(tmp_path / "var"), "--bundle", str(make_bundle(tmp_path / "usb", ca))])
    assert result.exit_code == 0, result.output
    assert "owner" not in result.output and "does not exist" not in result.output
    # a process that is neither root nor the service user cannot give files to it
    assert default_service_user(lambda name: nobody, euid=nobody.pw_uid + 1) is None
    assert default_service_user(lambda name: nobody, euid=0) == "cocoon"
    assert default_service_user(lambda name: nobody, euid=nobody.pw_uid) == "cocoon"


def test_the_command_line_asks_when_interactive(tmp_path, ca):
    bundle = make_bundle(tmp_path / "usb", ca)
    config = tmp_path / "etc" / "agent.toml"
    answers = f"station-09\nbroker.example\n8884\n{tmp_path / 'var'}\n{bundle}\n"
    result = CliRunner().invoke(cli, ["--config", str(config), "provision", "--interactive"],
                                input=answers)
    assert result.exit_code == 0, result.output
    loaded = load_config(config)
    assert (loaded.device.id, loaded.mqtt.host, loaded.mqtt.port) == \
        ("station-09", "broker.example", 8884)

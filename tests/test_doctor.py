"""`cocoon-agent doctor`: each check passes and fails through real parts (Mosquitto with TLS,
a revoked certificate, pcscd with virtual readers, a scale simulator on a pty, key files)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import pwd
import shutil
import socket
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from agent.cli.main import cli
from agent.config import load_config
from agent.contract.events import Draft
from agent.fleet import doctor_checks as checks
from agent.fleet.doctor import DoctorOptions, plan, run, to_table
from agent.fleet.doctor_checks import Status
from agent.spine.outbox import Outbox
from agent.station.config import parse_card, parse_scale
from tests.support.running import add_device

pytest_plugins = ("tests.support.pty",)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def device(site):
    """A device of the running site: (config path, loaded config)."""
    path = add_device(site, "station-21")
    return path, load_config(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- broker and certificate ----------------------------------------------------------------

def test_broker_accepts_the_device(device):
    result = checks.check_broker(device[1], timeout_s=10)
    assert result.status is Status.OK, result


def test_broker_unreachable(device):
    config = device[1]
    config = dataclasses.replace(config, mqtt=dataclasses.replace(config.mqtt, port=free_port()))
    result = checks.check_broker(config, timeout_s=5)
    assert result.status is Status.FAIL and "unreachable" in result.detail


def test_a_revoked_certificate_is_reported_as_refused(site, device):
    site.ca.revoke(device[1].mqtt.cert_file)
    site.broker.stop()
    site.broker.start()                         # Mosquitto reads the CRL when it starts
    result = checks.check_broker(device[1], timeout_s=10)
    assert result.status is Status.FAIL and "refused this device's certificate" in result.detail
    assert "checks out here" in result.detail and "probably revoked" in result.detail


def test_a_refusal_for_a_local_reason_names_it_not_revocation(tmp_path, site, device):
    """Refused certificates that are not revoked: the doctor gives the reason it can see."""
    from agent.demo.devpki import LocalCA

    config = device[1]
    other = LocalCA.create(tmp_path / "other").issue("station-21")
    shutil.copy(other.cert_file, config.mqtt.cert_file)
    shutil.copy(other.key_file, config.mqtt.key_file)
    result = checks.check_broker(config, timeout_s=10)
    assert result.status is Status.FAIL and "refused this device's certificate" in result.detail
    assert "not issued by the CA" in result.detail and "revoked" not in result.detail
    assert "bundle" in result.hint

    _issue(site, config, -3)                    # from the right CA, over its key, but expired
    result = checks.check_broker(config, timeout_s=10)
    assert result.status is Status.FAIL and "refused this device's certificate" in result.detail
    assert "expired on" in result.detail and "revoked" not in result.detail


def _issue(site, config, days: float, cn: str = "station-21") -> None:
    """Replace the device's certificate by one valid for `days` (negative: expired)."""
    key = serialization.load_pem_private_key(config.mqtt.key_file.read_bytes(), None)
    now = dt.datetime.now(dt.timezone.utc)
    start = now - dt.timedelta(days=400 if days < 0 else 1)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(site.ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(now + dt.timedelta(days=days))
            .sign(site.ca.key, hashes.SHA256()))
    config.mqtt.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_certificate_validity_and_days_to_expiry(site, device):
    config = device[1]
    assert checks.check_certificate(config).status is Status.OK
    _issue(site, config, 12)
    result = checks.check_certificate(config)
    assert result.status is Status.WARN and "expires in 1" in result.detail
    _issue(site, config, -3)
    assert checks.check_certificate(config).status is Status.FAIL
    _issue(site, config, 100, cn="station-99")
    assert "not 'station-21'" in checks.check_certificate(config).detail


def test_a_certificate_from_another_ca_or_key(tmp_path, site, device):
    from agent.demo.devpki import LocalCA

    config = device[1]
    other = LocalCA.create(tmp_path / "other").issue("station-21")
    shutil.copy(other.cert_file, config.mqtt.cert_file)
    assert "does not belong to the key" in checks.check_certificate(config).detail
    shutil.copy(other.key_file, config.mqtt.key_file)
    assert "not issued by the CA" in checks.check_certificate(config).detail


# -- this machine ----------------------------------------------------------------------------

def test_clock():
    assert checks.check_clock(lambda: True).status is Status.OK
    result = checks.check_clock(lambda: False)
    assert result.status is Status.FAIL and "timedatectl" in result.hint


def test_disk(device):
    config = device[1]
    assert checks.check_disk(config).status in (Status.OK, Status.WARN)
    assert checks.check_disk(config, min_free_bytes=2**62).status is Status.FAIL
    big = dataclasses.replace(config, outbox=dataclasses.replace(config.outbox,
                                                                 capacity_bytes=2**60))
    assert checks.check_disk(big).status is Status.WARN


def test_outbox_depth_and_oldest_pending_age(device, signer):
    config = device[1]
    assert checks.check_outbox(config).detail == "no events recorded yet"
    assert not config.outbox_path.exists()         # the doctor creates nothing
    with Outbox(config.outbox_path, device="station-21", signer=signer) as outbox:
        outbox.append(Draft("test.one", "alert", {"n": 1}))
        outbox.append(Draft("test.two", "money", {"n": 2}))
    result = checks.check_outbox(config)
    assert result.status is Status.OK and result.detail.startswith("2 unacknowledged")
    assert checks.check_outbox(config, warn_age_s=0).status is Status.WARN
    assert checks.check_outbox(config, fail_age_s=0).status is Status.FAIL


def test_key_files_mode_and_owner(device):
    config = device[1]
    keys = [config.device.signing_key_file, config.mqtt.key_file]
    config.mqtt.key_file.chmod(0o600)
    assert checks.check_key_files(keys).status is Status.OK
    config.device.signing_key_file.chmod(0o644)
    result = checks.check_key_files(keys)
    assert result.status is Status.FAIL and "mode 0644" in result.detail
    assert f"chmod 600 {config.device.signing_key_file}" in result.hint
    config.device.signing_key_file.chmod(0o600)
    result = checks.check_key_files(keys, user="nobody")
    assert result.status is Status.FAIL and "not nobody" in result.detail
    nobody = pwd.getpwnam("nobody")
    for key in keys:
        os.chown(key, nobody.pw_uid, nobody.pw_gid)
    assert checks.check_key_files(keys, user="nobody").status is Status.OK
    assert "does not exist" in checks.check_key_files(keys, user="no-such-user").detail
    config.mqtt.key_file.unlink()
    assert "missing" in checks.check_key_files(keys).detail


def test_systemd_unit_and_its_watchdog(tmp_path):
    shutil.copy(REPO / "systemd" / "cocoon-agent.service", tmp_path)
    result = checks.check_unit([tmp_path])
    assert result.status is Status.OK and "WatchdogSec=60 s" in result.detail
    unit = tmp_path / "cocoon-agent.service"
    unit.write_text(unit.read_text().replace("WatchdogSec=60", "#WatchdogSec=60"))
    assert "no WatchdogSec" in checks.check_unit([tmp_path]).detail
    result = checks.check_unit([tmp_path / "empty"])
    assert result.status is Status.FAIL and "not installed" in result.detail


# -- hardware ----------------------------------------------------------------------------------

def test_card_reader_present_and_absent(tmp_path, pcscd):
    issuer = tmp_path / "issuer.pem"
    ok = checks.check_card_reader(parse_card(tmp_path / "a.toml", {
        "reader": pcscd.reader().name, "issuer_public_key_file": str(issuer)}))
    assert ok.status is Status.OK, ok
    missing = checks.check_card_reader(parse_card(tmp_path / "a.toml", {
        "reader": "ACR1252", "issuer_public_key_file": str(issuer)}))
    assert missing.status is Status.FAIL and "ACR1252" in missing.detail
    assert "plug the reader in" in missing.hint


def _scale(tmp_path, port, protocol="xk3190-a9"):
    return parse_scale(tmp_path / "a.toml", {"port": str(port), "protocol": protocol,
                                             "capacity_g": "150000",
                                             "stable_count": 3, "stable_window_s": 1.0})


def test_a_scale_answering_with_stable_frames(tmp_path, pty_pair):
    from drivers.scale.simulator import Simulator

    with Simulator(str(pty_pair.peer), "xk3190-a9", rate_hz=40) as sim:
        sim.set_target("12.34")
        result = checks.check_scale(_scale(tmp_path, pty_pair.device), seconds=5)
    assert result.status is Status.OK and "stable 12.34 kg" in result.detail, result


def test_a_balance_that_answers_only_when_asked(tmp_path, pty_pair):
    """MT-SICS sends nothing by itself: the doctor's reader asks it, as the station's does."""
    from drivers.scale.simulator import Simulator

    with Simulator(str(pty_pair.peer), "mt-sics", rate_hz=40) as sim:
        sim.set_target("12.34")
        result = checks.check_scale(_scale(tmp_path, pty_pair.device, "mt-sics"), seconds=5)
    assert result.status is Status.OK and "stable 12.34 kg" in result.detail, result


def test_a_silent_scale(tmp_path, pty_pair):
    result = checks.check_scale(_scale(tmp_path, pty_pair.device), seconds=0.5)
    assert result.status is Status.FAIL and "sent nothing" in result.detail


def test_a_scale_speaking_another_protocol(tmp_path, pty_pair):
    import serial

    stop = threading.Event()
    peer = serial.serial_for_url(str(pty_pair.peer), timeout=0.1)

    def babble():
        while not stop.is_set():
            peer.write(b"\x02?? not a weight ??\x03\r\n")
            stop.wait(0.02)

    writer = threading.Thread(target=babble, daemon=True)
    writer.start()
    try:
        result = checks.check_scale(_scale(tmp_path, pty_pair.device), seconds=1)
    finally:
        stop.set()
        writer.join(5)
        peer.close()
    assert result.status is Status.FAIL and "none valid" in result.detail, result
    assert "scale watch" in result.hint


def test_a_scale_port_that_does_not_exist(tmp_path):
    result = checks.check_scale(_scale(tmp_path, tmp_path / "ttyUSB9"), seconds=0.5)
    assert result.status is Status.FAIL and "ttyUSB9" in result.detail


# -- the whole doctor --------------------------------------------------------------------------

def test_only_configured_parts_are_checked(device, tmp_path):
    names = [name for name, _ in plan(device[1], DoctorOptions(unit_dirs=(tmp_path,)))]
    assert names == ["configuration", "broker", "certificate", "clock", "disk", "outbox",
                     "key files", "systemd unit"]


def test_doctor_command_table_json_and_exit_status(device, tmp_path):
    path, config = device
    config.mqtt.key_file.chmod(0o600)
    # The packaged unit, run as the user who owns this test's keys: the check of the service
    # user must not depend on a `cocoon` user that some other test or install left behind.
    unit = (REPO / "systemd" / "cocoon-agent.service").read_text()
    owner = pwd.getpwuid(config.device.signing_key_file.stat().st_uid).pw_name
    assert "\nUser=cocoon\n" in unit
    (tmp_path / "units").mkdir()
    (tmp_path / "units" / "cocoon-agent.service").write_text(
        unit.replace("\nUser=cocoon\n", f"\nUser={owner}\n"))
    unit_dir = str(tmp_path / "units")
    runner = CliRunner()
    args = ["--config", str(path), "doctor", "--unit-dir", unit_dir, "--timeout", "10",
            "--skip", "clock"]
    result = runner.invoke(cli, [*args, "--json"])
    report = json.loads(result.stdout)
    statuses = {c["check"]: c["status"] for c in report["checks"]}
    assert statuses["broker"] == "ok" and statuses["systemd unit"] == "ok"
    assert report["ok"] is (result.exit_code == 0)
    assert "clock" not in statuses
    config.device.signing_key_file.chmod(0o644)
    result = runner.invoke(cli, args)
    assert result.exit_code == 1
    assert "FAIL" in result.output and f"chmod 600 {config.device.signing_key_file}" in \
        result.output and "To fix:" in result.output


def test_an_unreadable_configuration_is_one_clear_failure(tmp_path):
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "none.toml"), "doctor"])
    assert result.exit_code == 1
    assert "configuration" in result.output and "not found" in result.output


def test_a_check_that_breaks_does_not_hide_the_others(device, tmp_path):
    broken = DoctorOptions(unit_dirs=(tmp_path,), skip=frozenset({"broker"}),
                           clock=lambda: 1 / 0)
    results = run(device[1], broken)
    clock = next(r for r in results if r.name == "clock")
    assert clock.status is Status.FAIL and "could not run" in clock.detail
    assert len(results) == 7 and "clock" in to_table(results)


def test_a_provisioned_device_whose_csr_was_signed_passes_the_broker_checks(site, tmp_path):
    """Fresh machine -> provision -> the CA signs its CSR -> doctor: broker and certificate."""
    from agent.fleet.provision import Plan, provision

    bundle = tmp_path / "usb"
    bundle.mkdir()
    shutil.copy(site.ca.cert_file, bundle / "ca.pem")
    shutil.copy(site.ingest_public_key, bundle / "ingest.pem")
    plan_ = Plan(device_id="station-51", config_file=tmp_path / "etc" / "agent.toml",
                 data_dir=tmp_path / "var", broker_host=site.broker.host,
                 broker_port=site.broker.port, bundle=bundle)
    provision(plan_)
    config = load_config(plan_.config_file)
    assert checks.check_broker(config, timeout_s=5).detail.endswith("does not exist")
    csr = x509.load_pem_x509_csr(plan_.csr_file.read_bytes())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(csr.subject)
            .issuer_name(site.ca.cert.subject).public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .sign(site.ca.key, hashes.SHA256()))
    plan_.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    assert checks.check_certificate(config).status is Status.OK
    assert checks.check_broker(config, timeout_s=10).status is Status.OK
    keys = [config.device.signing_key_file, config.mqtt.key_file]
    assert checks.check_key_files(keys).status is Status.OK

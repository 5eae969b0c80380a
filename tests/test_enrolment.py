"""Enrolment and renewal through the real broker: a device with only a claim certificate and a
one-time token gets its own certificate, is registered with the ingest, and its events are
acknowledged; tokens are one-time and per device; renewal needs the registered signing key."""

from __future__ import annotations

import subprocess
import threading

import pytest
from cryptography import x509

from agent.contract.enrolment import EnrolmentError, build_request
from agent.contract.signing import Ed25519Signer, generate_key_file
from agent.demo.sandbox import write_toml
from agent.fleet.enrolment import ensure_tls_key, make_csr
from agent.link.mqtt import LinkSettings, MqttLink
from ingest.config import load_ingest_config
from ingest.enrolment import EnrolmentService, Refused
from tests.support.running import BIN, FAST_MQTT, ingest_store_seqs
from tests.support.waiting import wait_for

DEV = "station-09"


def cocoon(*args, check=True):
    proc = subprocess.run([str(BIN / args[0]), *map(str, args[1:])], capture_output=True,
                          text=True, timeout=90)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args[:3]} exit {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture
def enrolment(site, tmp_path):
    """The enrolment service (CN enrol) running with the site's CA, in a thread."""
    path = write_toml(tmp_path / "enrol.toml", {
        "enrolment": {"data_dir": str(tmp_path / "enrol"),
                      "devices_dir": str(site.ingest_config.parent / "devices"),
                      "ca_cert_file": str(site.ca.cert_file),
                      "ca_key_file": str(site.ca.directory / "ca.key"), "cert_days": 30},
        "mqtt": site.mqtt_section("enrol"),
    })
    config = load_ingest_config(path)
    settings = config.require_enrolment()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    service = EnrolmentService(settings)
    link = MqttLink(LinkSettings.from_config("enrol", config.mqtt), service)
    stop = threading.Event()
    thread = threading.Thread(target=link.run, args=(stop,), daemon=True)
    thread.start()
    wait_for(lambda: link.status.connected, 10, what="the enrolment service connected")
    yield path, service
    stop.set()
    thread.join(10)


@pytest.fixture
def device(site, tmp_path):
    """A provisioned device: signing key and configuration, no certificate yet."""
    root = tmp_path / DEV
    (root / "data").mkdir(parents=True)
    generate_key_file(root / "data" / "device-signing.key")
    mqtt = site.mqtt_section("unused-cn")
    mqtt.update(FAST_MQTT, cert_file=str(root / "tls" / "device.pem"),
                key_file=str(root / "tls" / "device.key"))
    config = write_toml(root / "agent.toml", {
        "device": {"id": DEV, "data_dir": "data", "heartbeat_interval_s": 1},
        "mqtt": mqtt,
        "keys": {"ingest_public_key_file": str(site.ingest_public_key)},
        "outbox": {"telemetry_batch_ms": 0},
    })
    claim = site.ca.issue("claim")
    return config, claim, root


def token(enrol_config, device=DEV, *extra):
    return cocoon("cocoon-ingest", "--config", enrol_config, "enrolment", "token",
                  "--device", device, *extra).stdout.strip()


def enrol(config, claim, tok, *extra, check=True):
    return cocoon("cocoon-agent", "--config", config, "enrol", "--token", tok, "--claim-cert",
                  claim.cert_file, "--claim-key", claim.key_file, "--timeout", 15, *extra,
                  check=check)


def test_a_device_enrols_and_its_events_are_acknowledged(site, services, enrolment, device):
    enrol_config, service = enrolment
    config, claim, root = device
    tok = token(enrol_config)
    assert "enrolled:" in enrol(config, claim, tok).stdout
    cert = x509.load_pem_x509_certificate((root / "tls" / "device.pem").read_bytes())
    assert cert.subject.rfc4514_string() == f"CN={DEV}"
    assert ((root / "tls" / "device.key").stat().st_mode & 0o777) == 0o600
    assert (site.ingest_config.parent / "devices" / f"{DEV}.pem").exists()
    # running it again changes nothing; forcing it with the spent token only fetches the
    # same certificate again (same key, same CSR), and a new TLS key gets nothing from it
    assert "already enrolled" in enrol(config, claim, tok).stdout
    issued = (root / "tls" / "device.pem").read_bytes()
    assert "enrolled:" in enrol(config, claim, tok, "--force").stdout
    assert (root / "tls" / "device.pem").read_bytes() == issued
    (root / "tls" / "device.key").rename(root / "tls" / "device.key.kept")
    again = enrol(config, claim, tok, "--force", check=False)
    assert again.returncode == 2 and "already used" in again.stderr
    (root / "tls" / "device.key.kept").replace(root / "tls" / "device.key")

    services.ingest(site.ingest_config)
    agent = services.agent(config)
    agent.wait_connected()
    seq = agent.append("test.enrolled", "money", {"ok": True})
    wait_for(lambda: seq in ingest_store_seqs(site, DEV), 15, what="the event at the ingest")

    renewed = cocoon("cocoon-agent", "--config", config, "renew").stdout
    assert renewed.startswith("renewed: valid for")
    new_cert = x509.load_pem_x509_certificate((root / "tls" / "device.pem").read_bytes())
    assert new_cert.serial_number != cert.serial_number
    assert "not due" in cocoon("cocoon-agent", "--config", config, "renew",
                               "--if-within-days", 5).stdout


def test_a_retry_after_a_lost_reply_gets_the_certificate_already_issued(site, enrolment,
                                                                        device):
    """The service grants the request, but its reply never reaches the device (a dropped
    connection, a power cut): the token is spent. Running enrol again sends the same CSR,
    which provisioning's CSR file keeps, and gets the certificate already issued."""
    enrol_config, service = enrolment
    config, claim, root = device
    answer = service.on_message
    replies = []

    def drop_first_reply(link, topic, payload, retain):
        class Lossy:
            def publish(self, topic, payload, qos=0):
                replies.append(payload)
                if len(replies) > 1:
                    link.publish(topic, payload, qos=qos)

            def __getattr__(self, name):
                return getattr(link, name)
        answer(Lossy(), topic, payload, retain)

    service.on_message = drop_first_reply
    tok = token(enrol_config)
    lost = cocoon("cocoon-agent", "--config", config, "enrol", "--token", tok, "--claim-cert",
                  claim.cert_file, "--claim-key", claim.key_file, "--timeout", 3, check=False)
    assert lost.returncode == 2 and "safe to run it again" in lost.stderr, lost.stderr
    assert service.granted == 1 and not (root / "tls" / "device.pem").exists()
    issued = service.tokens.get(tok)["certificate"]

    assert "enrolled:" in enrol(config, claim, tok).stdout
    assert (root / "tls" / "device.pem").read_text() == issued
    assert (root / "tls" / "device.csr").read_text() == service.tokens.get(tok)["csr"]
    assert service.granted == 2 and service.refused == 0
    assert "already enrolled" in enrol(config, claim, tok).stdout


def test_tokens_are_one_time_and_bound_to_their_device(site, enrolment, device):
    enrol_config, service = enrolment
    config, claim, root = device
    other = token(enrol_config, "station-10")
    refused = enrol(config, claim, other, check=False)
    assert refused.returncode == 2 and "another device" in refused.stderr
    assert not (root / "tls" / "device.pem").exists()
    assert "enrolled:" in enrol(config, claim, token(enrol_config)).stdout


def test_decisions_of_the_service(enrolment, tmp_path):
    _, service = enrolment
    signer = Ed25519Signer.generate()
    key = ensure_tls_key(tmp_path / "tls.key")
    tok = service.tokens.issue(DEV, ttl_s=60)
    good = build_request(DEV, make_csr(DEV, key), signer, token=tok)
    with pytest.raises(Refused, match="name the device"):
        service.enrol(build_request(DEV, make_csr("station-99", key), signer, token=tok))
    tampered = dict(good, signing_key=Ed25519Signer.generate().public_key_pem().decode())
    with pytest.raises(Refused, match="signature does not verify|kid"):
        service.enrol(tampered)
    first = service.enrol(good)
    assert service.enrol(good) == first                  # the same request: the same answer
    # a CSR made again over the same key differs byte for byte (ECDSA is randomised) but
    # asks for the same certificate
    again = build_request(DEV, make_csr(DEV, key), signer, token=tok)
    assert again["csr"] != good["csr"]
    assert service.enrol(again) == first
    # the spent token gives nothing for another TLS key or another signing key
    with pytest.raises(Refused, match="already used"):
        service.enrol(build_request(DEV, make_csr(DEV, ensure_tls_key(tmp_path / "other.key")),
                                    signer, token=tok))
    with pytest.raises(Refused, match="already used"):
        service.enrol(build_request(DEV, make_csr(DEV, key), Ed25519Signer.generate(),
                                    token=tok))
    with pytest.raises(Refused, match="already used"):
        service.enrol(dict(again, sig=good["sig"]))     # not signed as it says
    # another key for a registered device needs a --replace token
    thief = Ed25519Signer.generate()
    with pytest.raises(Refused, match="already registered with another signing key"):
        service.enrol(build_request(DEV, make_csr(DEV, key), thief,
                                    token=service.tokens.issue(DEV, ttl_s=60)))
    replaced = service.enrol(build_request(DEV, make_csr(DEV, key), thief,
                                           token=service.tokens.issue(DEV, ttl_s=60,
                                                                      replace=True)))
    assert replaced != first
    with pytest.raises(Refused, match="registered signing key"):
        service.renew(build_request(DEV, make_csr(DEV, key), signer, token=None,
                                    kind="renew.request"))
    expired = service.tokens.issue(DEV, ttl_s=-1)
    with pytest.raises(Refused, match="expired"):
        service.enrol(build_request(DEV, make_csr(DEV, key), thief, token=expired))
    with pytest.raises(Refused, match="not a valid device id"):
        service.tokens.issue("claim", ttl_s=60)


def test_reserved_names_are_not_device_ids(tmp_path):
    from agent.fleet.enrolment import ClaimSettings, enrol

    with pytest.raises(EnrolmentError, match="reserved"):
        enrol("claim", Ed25519Signer.generate(), token="t",
              claim=ClaimSettings("127.0.0.1", 1, tmp_path, tmp_path, tmp_path),
              tls_key_file=tmp_path / "k", cert_out=tmp_path / "c")


def test_a_revoked_device_is_refused_by_the_broker(site, services):
    from tests.support.running import add_device

    config = add_device(site, "station-11")
    agent = services.agent(config)
    agent.wait_connected()
    agent.stop()
    site.ca.revoke(site.ca.directory / "station-11.pem")
    site.broker.stop()
    site.broker.start()                              # the broker reads the CRL at start
    again = services.agent(config)
    wait_for(lambda: again.link.status.auth_failed, 15, what="the broker refusing the device")
    assert not again.link.status.connected
    assert "certificate" in again.link.status.last_error.lower()


def test_the_agent_renews_its_certificate_before_it_expires(site, services, enrolment, device):
    import dataclasses

    from agent.contract.envelope import parse_json_object
    from agent.fleet.enrolment import days_left

    enrol_config, service = enrolment
    config, claim, root = device
    enrol(config, claim, token(enrol_config))      # the service issues 30-day certificates
    service.settings = dataclasses.replace(service.settings, cert_days=400)
    agent = services.agent(config, start=False)
    assert agent.agent.renew_certificate_if_due() is True      # within 30 days: due
    assert days_left(root / "tls" / "device.pem") > 390
    assert agent.agent.renew_certificate_if_due() is False     # now it is not
    events = [parse_json_object(e.payload) for e in agent.outbox.pending(100)]
    (renewed,) = [e for e in events if e["type"] == "certificate.renewed"]
    assert renewed["priority"] == "alert" and float(renewed["body"]["days_left"]) > 390
    agent.start()
    agent.wait_connected()                         # with the new key and certificate

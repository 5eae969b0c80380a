"""Revocation at the bank: `cocoon-ingest revoke --device ID` records the device's watermark;
its events above it are refused and counted (whatever their time, whatever the broker's CRL),
those up to it still answered; renewal is refused; the broker's CRL is written again and the
broker (a real Mosquitto, SIGHUP) refuses the device's next TLS connection."""

import json
import ssl
import sys
from types import SimpleNamespace

import pytest
from cryptography import x509

from agent.contract import events, topics
from agent.contract.enrolment import build_request
from agent.contract.events import Context, Draft
from agent.contract.signing import Ed25519Signer
from agent.fleet.enrolment import ensure_tls_key, make_csr
from ingest.config import load_ingest_config
from ingest.enrolment import Refused
from ingest.revocation import write_crl
from ingest.store import DUPLICATE, REJECTED, IngestStore
from tests.support.mqtt import mqtt_client
from tests.support.running import (
    add_device,
    cli,
    ingest_device,
    ingest_rejections,
    ingest_store_seqs,
)
from tests.support.waiting import wait_for
from tests.test_enrolment import enrolment  # noqa: F401 (a fixture)
from tests.test_forgery import device_signer, raw_client
from tests.test_ingest_store import Registry, chain, msg

DEV = "station-01"


def test_events_above_the_recorded_watermark_are_refused(ingest_store_location):
    store = IngestStore(ingest_store_location)
    try:
        signer = Ed25519Signer.generate()
        reg = Registry(**{"dev-a": signer})
        evs = chain(signer, 6)
        store.process_batch([msg(e) for e in evs[:3] + evs[4:5]], reg)     # a hole at 4
        assert store.revoke("dev-a", "stolen")[0] == 3
        assert store.revoke("dev-a")[:2] == store.revoke("dev-a", "again")[:2]   # the first
        # seq 4 sealed with a time from before the revocation: refused all the same
        old = events.seal(Draft("test.x", "money", {"seq": 4}), device="dev-a", seq=4,
                          prev=events.event_hash(evs[2]), signer=signer,
                          context=Context(evs[0]["boot"], "2020-01-01T00:00:00.000000Z", True,
                                          1))
        out, moved = store.process_batch([msg(evs[1]), msg(old), msg(evs[3]), msg(evs[4]),
                                          msg(evs[5])], reg)
        assert [o.status for o in out] == [DUPLICATE, REJECTED, REJECTED, REJECTED, REJECTED]
        assert all("revoked" in o.reason for o in out[1:])
        assert moved == {"dev-a": (3, events.event_hash(evs[2]))}
        assert store.stored_seqs("dev-a") == [1, 2, 3, 5]
        row = store.devices()[0]
        assert (row["watermark"], row["rejected"], row["duplicates"]) == (3, 4, 1)
    finally:
        store.close()


def sealed_chain(site, n):
    out, prev, signer = [], events.GENESIS_PREV, device_signer(site, DEV)
    for seq in range(1, n + 1):
        out.append(events.seal(Draft("purchase.recorded", "money", {"n": seq}), device=DEV,
                               seq=seq, prev=prev, signer=signer))
        prev = events.event_hash(out[-1])
    return out


def acks_seen(raw) -> list[int]:
    with raw.cond:
        return [json.loads(p)["seq"] for t, p in raw.messages if t == topics.acks(DEV)]


@pytest.mark.parametrize("workers", [1, 3])
def test_a_revoked_device_is_refused_by_every_worker(site, site_store, services, workers):
    add_device(site, DEV)
    ingests = [services.ingest(site.ingest_config, worker=f"w{i}") for i in range(workers)]
    for ingest in ingests:
        ingest.wait_connected()
    evs = sealed_chain(site, 12)
    with raw_client(site, DEV) as raw:
        raw.subscribe(topics.acks(DEV))
        for ev in evs[:5]:
            raw.publish(topics.events(DEV), ev)
        wait_for(lambda: 5 in acks_seen(raw), 15, what="the ack of seq 5")
        done = cli("cocoon-ingest", "--config", site.ingest_config, "revoke", "--device", DEV,
                   "--reason", "stolen")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"revoked {DEV} at seq 5")
        # the broker still lets it in (no CRL here): the bank refuses what is above seq 5
        for ev in evs[5:] + evs[:5]:
            raw.publish(topics.events(DEV), ev)
        wait_for(lambda: ingest_device(site, DEV)["rejected"] == 7
                 and ingest_device(site, DEV)["duplicates"] == 5, 15,
                 what="seven events refused, five answered again")
        seen = acks_seen(raw)
        assert seen == sorted(seen) and seen[-1] == 5
    assert ingest_store_seqs(site, DEV) == [1, 2, 3, 4, 5]
    refused = ingest_rejections(site, DEV)
    assert sorted(r["seq"] for r in refused) == list(range(6, 13))
    assert all("revoked" in r["reason"] for r in refused)
    assert sum(i.stats["rejected"] for i in ingests) == 7


def refused_by_broker(site, cn) -> bool:
    """Whether the broker refuses a new MQTT connection over TLS with `cn`'s certificate."""
    pki = SimpleNamespace(ca=site.ca, clients={cn: site.ca.issue(cn)})
    try:
        client = mqtt_client(pki, site.broker, cn, timeout=3)
    except (TimeoutError, ConnectionError, ssl.SSLError, OSError):
        return True
    client.disconnect()
    client.loop_stop()
    return False


def test_the_crl_is_written_again_and_the_broker_reloads_it(site, tmp_path):
    add_device(site, DEV)
    # The broker reads a CRL from its start (an empty one), as a bank's does.
    write_crl(site.ca.crl_file, site.ca.cert_file, site.ca.key_file, set())
    site.broker.stop()
    site.broker.start()
    assert not refused_by_broker(site, DEV)
    reload = f"{sys.executable} -c \"import os, signal; os.kill({site.broker.pid}, signal.SIGHUP)\""
    with open(site.ingest_config, "a", encoding="utf-8") as fh:
        fh.write(f'\n[broker]\ncrl_file = "{site.ca.crl_file}"\n'
                 f"reload_command = '{reload}'\n"
                 f'\n[enrolment]\ndata_dir = "{tmp_path / "enrol"}"\n'
                 f'devices_dir = "devices"\nca_cert_file = "{site.ca.cert_file}"\n'
                 f'ca_key_file = "{site.ca.key_file}"\n')
    done = cli("cocoon-ingest", "--config", site.ingest_config, "revoke", "--device", DEV,
               "--cert", site.ca.directory / f"{DEV}.pem")
    assert done.returncode == 0, done.stderr
    assert "1 certificate(s) listed" in done.stdout and "broker told to reload" in done.stdout
    assert (site.ingest_config.parent / "devices" / f"{DEV}.revoked").exists()
    wait_for(lambda: refused_by_broker(site, DEV), 10, what="the broker refusing the device")
    assert not refused_by_broker(site, "station-02")     # the others still come in
    assert site.broker.is_running
    failed = cli("cocoon-ingest", "--config", site.ingest_config, "revoke", "--device", "x_y")
    assert failed.returncode != 0


@pytest.fixture
def enrol_service(enrolment):  # noqa: F811 (the fixture of tests/test_enrolment.py)
    return enrolment


def test_renewal_is_refused_and_issued_certificates_go_on_the_crl(site, enrol_service,
                                                                   tmp_path):
    enrol_config, service = enrol_service
    signer = Ed25519Signer.generate()
    key = ensure_tls_key(tmp_path / "tls.key")
    first = service.enrol(build_request(DEV, make_csr(DEV, key), signer,
                                        token=service.tokens.issue(DEV, ttl_s=60)))
    renewal = build_request(DEV, make_csr(DEV, key), signer, token=None, kind="renew.request")
    renewed = service.renew(renewal)
    serials = {x509.load_pem_x509_certificate(c.encode()).serial_number for c in (first, renewed)}
    crl_file = tmp_path / "crl.pem"
    enrol_section = load_ingest_config(enrol_config).require_enrolment()
    with open(site.ingest_config, "a", encoding="utf-8") as fh:
        fh.write(f'\n[broker]\ncrl_file = "{crl_file}"\n'
                 f'\n[enrolment]\ndata_dir = "{enrol_section.data_dir}"\n'
                 f'devices_dir = "devices"\nca_cert_file = "{site.ca.cert_file}"\n'
                 f'ca_key_file = "{site.ca.key_file}"\n')
    done = cli("cocoon-ingest", "--config", site.ingest_config, "revoke", "--device", DEV)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"revoked {DEV} at seq 0")
    crl = x509.load_pem_x509_crl(crl_file.read_bytes())
    assert crl.is_signature_valid(site.ca.cert.public_key())
    assert {r.serial_number for r in crl} == serials
    with pytest.raises(Refused, match="revoked at the bank"):
        service.renew(renewal)
    with pytest.raises(Refused, match="revoked at the bank"):
        service.enrol(build_request(DEV, make_csr(DEV, key), signer,
                                    token=service.tokens.issue(DEV, ttl_s=60, replace=True)))

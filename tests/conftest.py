"""Shared pytest fixtures."""

from __future__ import annotations

# ---------------------------------------------------------------------------
# Local PKI and Mosquitto broker fixtures (agent.demo.devpki / agent.demo.localbroker).
# ---------------------------------------------------------------------------
from types import SimpleNamespace

import pytest

from agent.demo.devpki import LocalCA
from agent.demo.localbroker import LocalBroker

# tests.support.pcsc: an isolated pcscd (sets PCSCLITE_CSOCK_NAME first); tests.support.postgres:
# a PostgreSQL server for the session and a database per test, for the ingest's store
pytest_plugins = ["tests.support.pcsc", "tests.support.postgres"]

PKI_CLIENTS = ("dev-a", "dev-b", "ingest", "operator")


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """Throwaway CA with a server cert for "localhost" and client certs.

    Attributes: ``ca`` (LocalCA), ``server`` (CertPair), ``clients``
    (dict CN -> CertPair for dev-a, dev-b, ingest, operator).
    """
    ca = LocalCA.create(tmp_path_factory.mktemp("pki"))
    return SimpleNamespace(
        ca=ca,
        server=ca.issue("localhost", server=True),
        clients={cn: ca.issue(cn) for cn in PKI_CLIENTS},
    )


@pytest.fixture
def broker(pki, tmp_path):
    """A running LocalBroker (mutual TLS, DEFAULT_ACL), stopped at teardown."""
    b = LocalBroker(
        tmp_path / "broker",
        pki.ca.cert_file,
        pki.server.cert_file,
        pki.server.key_file,
    )
    b.start()
    try:
        yield b
    finally:
        b.stop()


# --- end of local PKI / broker fixtures ------------------------------------


# ---------------------------------------------------------------------------
# Outbox and key fixtures for tests without a broker.
# ---------------------------------------------------------------------------
from agent.contract.signing import Ed25519Signer  # noqa: E402
from agent.spine.outbox import Outbox  # noqa: E402


@pytest.fixture
def signer():
    return Ed25519Signer.generate()


@pytest.fixture
def make_outbox(tmp_path, signer):
    """Factory for outboxes on a temp file; all are closed at teardown."""
    opened = []

    def factory(name="outbox.sqlite", **kw):
        kw.setdefault("telemetry_batch_ms", 0)
        ob = Outbox(tmp_path / name, device=kw.pop("device", "dev-a"),
                    signer=kw.pop("signer", signer), **kw)
        opened.append(ob)
        return ob

    yield factory
    for ob in opened:
        ob.close()


# ---------------------------------------------------------------------------
# A whole local installation (broker, ingest, devices) and services run in threads.
# ---------------------------------------------------------------------------
from tests.support.running import Services, make_site  # noqa: E402


@pytest.fixture
def site(tmp_path):
    """A started Site with short timeouts (tests.support.running.make_site)."""
    site = make_site(tmp_path / "site")
    try:
        yield site
    finally:
        site.broker.stop()


@pytest.fixture
def services(site):
    """Agents and ingests run in threads, all stopped at teardown."""
    svc = Services()
    try:
        yield svc
    finally:
        svc.stop_all()

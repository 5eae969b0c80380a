"""Shared pytest fixtures."""

from __future__ import annotations

# ---------------------------------------------------------------------------
# Local PKI and Mosquitto broker fixtures (agent.devpki / agent.localbroker).
# ---------------------------------------------------------------------------
from types import SimpleNamespace

import pytest

from agent.devpki import LocalCA
from agent.localbroker import LocalBroker

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

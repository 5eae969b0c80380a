"""Enrolment, the device's side: how a freshly provisioned device gets its TLS certificate,
and renews it. The protocol (topics, messages, who signs what) is agent.contract.enrolment.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.contract.durable import fsync_dir, write_atomic, write_private
from agent.contract.enrolment import (
    REQUEST_TOPIC,
    RESERVED_IDS,
    EnrolmentError,
    build_request,
    parse_reply,
    renew_topic,
    renewed_topic,
    reply_topic,
)
from agent.contract.envelope import canonical

# -- keys and CSRs -------------------------------------------------------------------------

def ensure_tls_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The device's TLS key (ECDSA P-256), created (mode 0600) if it does not exist yet."""
    path = Path(path)
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise EnrolmentError(f"{path}: the TLS key must be ECDSA P-256")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return key


def make_csr(device: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_matches(pem: bytes, key: ec.EllipticCurvePrivateKey, device: str) -> bool:
    """True when `pem` is a validly self-signed CSR with CN = `device` over this key."""
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError:
        return False
    cn = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return bool(cn) and cn[0].value == device and csr.is_signature_valid and \
        _spki(csr.public_key()) == _spki(key.public_key())


def stored_csr(path: Path, key: ec.EllipticCurvePrivateKey, device: str) -> bytes:
    """The device's CSR from `path` (as provisioning wrote it), or a new one written there
    when it is missing or not for this key and device id. ECDSA signatures are randomised,
    so every new CSR differs byte for byte: keeping one lets a retried enrolment send the
    very request the service may already have granted."""
    path = Path(path)
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        pem = None
    if pem is not None and csr_matches(pem, key, device):
        return pem
    pem = make_csr(device, key)
    write_atomic(path, pem)
    return pem


def csr_file_for(tls_key_file: Path) -> Path:
    """Where the CSR of a TLS key lives: beside it (`tls/device.key` -> `tls/device.csr`)."""
    return Path(tls_key_file).with_suffix(".csr")


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def certificate_matches(cert_file: Path, key: ec.EllipticCurvePrivateKey, device: str) -> bool:
    """True when `cert_file` is a certificate for `device` over this key, still valid."""
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    except (OSError, ValueError):
        return False
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    same_key = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == \
        key.public_key().public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(cn) and cn[0].value == device and same_key and \
        cert.not_valid_after_utc.timestamp() > time.time()


def days_left(cert_file: Path) -> float:
    cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    return (cert.not_valid_after_utc.timestamp() - time.time()) / 86400


# -- the device's side -----------------------------------------------------------------------

@dataclass(frozen=True)
class ClaimSettings:
    host: str
    port: int
    ca_file: Path
    cert_file: Path      # the claim certificate (enrolment) or the device's own (renewal)
    key_file: Path


class _OneRequest:
    """A LinkHandler that publishes one request and waits for its answer."""

    def __init__(self, request: dict, request_topic: str, answer_topic: str):
        self.request, self.request_topic, self.answer_topic = request, request_topic, \
            answer_topic
        self.payload = canonical(request)
        self.answer: bytes | None = None
        self.done = threading.Event()

    def on_connected(self, link) -> None:
        link.subscribe(self.answer_topic, qos=1)
        link.publish(self.request_topic, self.payload, qos=1)

    def on_disconnected(self, link, reason: str) -> None:
        pass

    def on_message(self, link, topic: str, payload: bytes, retain: bool) -> None:
        if topic == self.answer_topic:
            self.answer = payload
            self.done.set()

    def on_puback(self, link, mid: int, reason_code: int) -> None:
        pass

    def on_tick(self, link) -> None:
        pass


def exchange(settings: ClaimSettings, client_id: str, request: dict, request_topic: str,
             answer_topic: str, timeout_s: float) -> bytes:
    """Publish `request` and return the answer's payload (EnrolmentError on timeout)."""
    from agent.link.mqtt import LinkSettings, MqttLink

    handler = _OneRequest(request, request_topic, answer_topic)
    link = MqttLink(LinkSettings(client_id=client_id, host=settings.host, port=settings.port,
                                 ca_file=settings.ca_file, cert_file=settings.cert_file,
                                 key_file=settings.key_file, clean_start=True,
                                 reconnect_min_s=0.2, reconnect_max_s=2.0), handler)
    stop = threading.Event()
    thread = threading.Thread(target=link.run, args=(stop,), daemon=True, name="enrol-link")
    thread.start()
    try:
        if not handler.done.wait(timeout_s):
            why = link.status.last_error or "no answer from the enrolment service"
            if link.status.auth_failed:
                why = f"the broker refused the certificate ({why})"
            raise EnrolmentError(f"enrolment did not complete within {timeout_s:g} s: {why}; "
                                 "it is safe to run it again")
        return handler.answer
    finally:
        stop.set()
        thread.join(timeout=10)


def enrol(device: str, signer, *, token: str, claim: ClaimSettings, tls_key_file: Path,
          cert_out: Path, ca_out: Path | None = None, force: bool = False,
          timeout_s: float = 30.0, csr_file: Path | None = None) -> dict:
    """Get this device's certificate with a one-time token. Resumable: the TLS key and its
    CSR (`csr_file`, by default beside the key, where provisioning writes it) are kept
    between attempts, so a request repeated after a lost answer is the same request, and
    the service answers it with the certificate it already issued."""
    if device in RESERVED_IDS:
        raise EnrolmentError(f"{device!r} is a reserved name, not a device id")
    key = ensure_tls_key(tls_key_file)
    if Path(cert_out).exists() and not force:
        if certificate_matches(cert_out, key, device):
            return {"status": "already enrolled", "certificate": str(cert_out)}
        raise EnrolmentError(f"{cert_out} already holds another identity; enrol with --force "
                             "to replace it")
    csr = stored_csr(csr_file or csr_file_for(tls_key_file), key, device)
    request = build_request(device, csr, signer, token=token)
    answer = exchange(claim, f"claim-{request['nonce'][:12]}", request, REQUEST_TOPIC,
                      reply_topic(request["nonce"]), timeout_s)
    reply = parse_reply(answer, device, request["nonce"])
    _store(reply, key, device, cert_out, ca_out)
    return {"status": "enrolled", "certificate": str(cert_out)}


def renew(device: str, signer, *, current: ClaimSettings, new_key_file: Path,
          cert_out: Path, timeout_s: float = 30.0) -> dict:
    """A fresh TLS key and certificate over the device's own, still valid, certificate. The
    new key is written beside the old one and both are switched only once the new
    certificate is in hand, so a failure at any step leaves the old identity working."""
    key = ec.generate_private_key(ec.SECP256R1())
    request = build_request(device, make_csr(device, key), signer, token=None,
                            kind="renew.request")
    answer = exchange(current, f"{device}-renew", request, renew_topic(device),
                      renewed_topic(device), timeout_s)
    reply = parse_reply(answer, device, request["nonce"])
    pending_key = Path(str(new_key_file) + ".new")
    write_private(pending_key, key.private_bytes(serialization.Encoding.PEM,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    _store(reply, key, device, Path(str(cert_out) + ".new"), None)
    os.replace(pending_key, new_key_file)
    os.replace(str(cert_out) + ".new", cert_out)
    fsync_dir(Path(cert_out).parent)
    return {"status": "renewed", "days_left": round(days_left(cert_out), 1)}


def _store(reply: dict, key, device: str, cert_out: Path, ca_out: Path | None) -> None:
    cert_pem = reply["certificate"].encode()
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise EnrolmentError("the enrolment service sent a malformed certificate") from None
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cn or cn[0].value != device or cert.public_key().public_numbers() != \
            key.public_key().public_numbers():
        raise EnrolmentError("the certificate received is not for this device's key")
    write_atomic(cert_out, cert_pem)
    if ca_out is not None:
        write_atomic(ca_out, reply["ca"].encode())

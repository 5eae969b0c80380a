"""Enrolment: how a freshly provisioned device gets its TLS certificate, and renews it.

A new device has a signing key and a TLS key but no certificate the broker accepts. It
connects with the cooperative's shared *claim* certificate (CN `claim`), whose broker ACL
allows only the enrolment topics, and publishes a request signed with its own signing key:

    topic  cocoon/v1/enrol/request
    {"v": 1, "type": "enrol.request", "device": ID, "nonce": 32 hex, "token": T,
     "csr": PEM (CN = ID, ECDSA P-256), "signing_key": PEM, "alg": A, "kid": K, "sig": S}

The enrolment service (ingest/enrolment.py) checks the one-time token (issued for this device
id), the CSR and the proof of the signing key, signs the CSR with the device CA, registers the
signing key with the ingest, and answers on `cocoon/v1/enrol/reply/<nonce>`:

    {"v": 1, "type": "enrol.reply", "device": ID, "nonce": N, "status": "ok",
     "certificate": PEM, "ca": PEM}      or   {"status": "refused", "reason": "..."}

Renewal uses the device's own certificate and topics (`cocoon/v1/<id>/renew`, answered on
`cocoon/v1/<id>/renewed`), needs no token, and is answered only for the signing key already
registered for that device. The same request is idempotent: asked again (after a lost
answer or a crash), the service answers with the certificate it already issued.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.contract.envelope import canonical, parse_json_object, sign_object, verify_object
from agent.errors import CocoonError
from agent.spine.durable import fsync_dir

REQUEST_TOPIC = "cocoon/v1/enrol/request"
REPLY_PREFIX = "cocoon/v1/enrol/reply/"
CLAIM_CN = "claim"
SERVICE_CN = "enrol"
RESERVED_IDS = frozenset({CLAIM_CN, SERVICE_CN, "ingest", "operator", "enrol"})


class EnrolmentError(CocoonError):
    """Enrolment failed or was refused; the message says why and what to do."""


def renew_topic(device: str) -> str:
    return f"cocoon/v1/{device}/renew"


def renewed_topic(device: str) -> str:
    return f"cocoon/v1/{device}/renewed"


def reply_topic(nonce: str) -> str:
    return REPLY_PREFIX + nonce


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


def write_private(path: Path, data: bytes) -> None:
    """Write a secret atomically with mode 0600 (never readable by others, not even briefly)."""
    write_atomic(path, data, mode=0o600)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


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


# -- messages ------------------------------------------------------------------------------

def build_request(device: str, csr_pem: bytes, signer, *, token: str | None,
                  kind: str = "enrol.request", nonce: str | None = None) -> dict:
    unsigned = {"v": 1, "type": kind, "device": device,
                "nonce": nonce or secrets.token_hex(16), "csr": csr_pem.decode(),
                "signing_key": signer.public_key_pem().decode(), "alg": signer.alg,
                "kid": signer.kid}
    if token is not None:
        unsigned["token"] = token
    return sign_object(unsigned, signer)


def parse_reply(payload: bytes, device: str, nonce: str) -> dict:
    reply = parse_json_object(payload, "enrolment reply")
    if reply.get("device") != device or reply.get("nonce") != nonce:
        raise EnrolmentError("the enrolment reply is for another request")
    if reply.get("status") != "ok":
        raise EnrolmentError(f"enrolment refused: {reply.get('reason', 'no reason given')}")
    for key in ("certificate", "ca"):
        if not isinstance(reply.get(key), str):
            raise EnrolmentError(f"the enrolment reply has no {key}")
    return reply


def verify_request(request: dict):
    """The request's signing key (a Verifier) once its signature over the request checks."""
    from agent.contract.signing import Verifier

    verifier = Verifier.from_pem(request["signing_key"].encode())
    if verifier.kid != request.get("kid"):
        raise EnrolmentError("the request's kid is not its signing key's")
    verify_object(request, verifier, request.get("alg"))
    return verifier


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

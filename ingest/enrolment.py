"""The enrolment service: signs devices' CSRs and registers their signing keys.

It runs beside the ingest (`cocoon-ingest --config enrol.toml enrolment run`) with the device
CA's key, and answers the requests described in agent/contract/enrolment.py:

- an enrolment request (over the shared claim certificate) is granted only with a one-time
  token issued for that device id (`enrolment token --device ID`), stored as its SHA-256, and
  unexpired; the CSR must name the device (CN), use ECDSA P-256 and be self-signed correctly;
  the request must be signed by the signing key it presents. The key is registered
  (`<devices_dir>/<id>.pem`, where the ingest reads it) and the CSR signed by the device CA;
- a device already registered with another signing key is refused unless its token was issued
  with `--replace` (a device re-provisioned on purpose);
- a renewal request (over the device's own certificate) needs no token but must be signed by
  the device's registered signing key;
- a device revoked at the bank (`cocoon-ingest revoke`, which marks it `<id>.revoked` beside
  its key) is refused both: neither renewed nor enrolled again under its id;
- every certificate issued is recorded (`issued`: serial and device) for the broker's CRL;
- asked again with the same token for the same TLS key (the CSR's public key and common name)
  and the same signing key, the service answers with the certificate it already issued: a
  device whose answer was lost can simply retry (a CSR made again over the same key differs
  byte for byte, since ECDSA signatures are randomised, so keys are compared, not PEM).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import sqlite3
import threading
import time
from pathlib import Path

import sqlite_utils
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.contract import enrolment as proto
from agent.contract.durable import write_atomic
from agent.contract.envelope import canonical, parse_json_object
from agent.contract.errors import CocoonError
from agent.contract.signing import Verifier
from agent.contract.topics import DEVICE_ID_RE

from .revocation import is_revoked

log = logging.getLogger(__name__)


class Refused(CocoonError):
    """A request the service does not grant; the reason goes back to the device."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, path: Path):
        # One connection shared by the service's link thread and the callers: the lock
        # serialises them.
        self.db = sqlite_utils.Database(sqlite3.connect(path, check_same_thread=False))
        self._lock = threading.Lock()
        if "tokens" not in self.db.table_names():
            self.db["tokens"].create({"hash": str, "device": str, "expires": float,
                                      "replace": int, "used_at": float, "csr": str,
                                      "signing_key": str, "certificate": str}, pk="hash")
        if "issued" not in self.db.table_names():
            # Every certificate issued, so that `cocoon-ingest revoke` can list a revoked
            # device's certificates on the broker's CRL (serials as text: they are 159 bits).
            self.db["issued"].create({"serial": str, "device": str, "not_after": str,
                                      "issued_at": float}, pk="serial")

    def issue(self, device: str, *, ttl_s: float, replace: bool = False) -> str:
        if not DEVICE_ID_RE.match(device) or device in proto.RESERVED_IDS:
            raise Refused(f"{device!r} is not a valid device id")
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.db["tokens"].insert({"hash": token_hash(token), "device": device,
                                      "expires": time.time() + ttl_s, "replace": int(replace),
                                      "used_at": None, "csr": None, "signing_key": None,
                                      "certificate": None})
        return token

    def get(self, token: str) -> dict | None:
        with self._lock:
            rows = list(self.db["tokens"].rows_where("hash = ?", [token_hash(token)]))
        return rows[0] if rows else None

    def record_issued(self, device: str, certificate: str) -> None:
        cert = x509.load_pem_x509_certificate(certificate.encode())
        with self._lock:
            self.db["issued"].insert({"serial": str(cert.serial_number), "device": device,
                                      "not_after": cert.not_valid_after_utc.isoformat(),
                                      "issued_at": time.time()}, replace=True)

    def spend(self, token: str, csr: str, signing_key: str, certificate: str) -> None:
        with self._lock:
            self.db["tokens"].update(token_hash(token), {
                "used_at": time.time(), "csr": csr, "signing_key": signing_key,
                "certificate": certificate})


class EnrolmentService:
    """A LinkHandler for the service's MqttLink (client certificate CN `enrol`)."""

    def __init__(self, settings):
        self.settings = settings
        self.tokens = TokenStore(settings.data_dir / "enrolment.sqlite")
        self.ca_cert = x509.load_pem_x509_certificate(settings.ca_cert_file.read_bytes())
        self.ca_key = serialization.load_pem_private_key(settings.ca_key_file.read_bytes(),
                                                         password=None)
        self.devices_dir = Path(settings.devices_dir)
        self.granted = 0
        self.refused = 0

    # -- link handler -------------------------------------------------------------------------

    def on_connected(self, link) -> None:
        link.subscribe(proto.REQUEST_TOPIC, qos=1)
        link.subscribe(proto.renew_topic("+"), qos=1)

    def on_disconnected(self, link, reason: str) -> None:
        pass

    def on_puback(self, link, mid: int, reason_code: int) -> None:
        pass

    def on_tick(self, link) -> None:
        pass

    def on_message(self, link, topic: str, payload: bytes, retain: bool) -> None:
        renewal = topic != proto.REQUEST_TOPIC
        try:
            request = parse_json_object(payload, "enrolment request")
        except CocoonError as exc:
            log.warning("enrolment: unreadable request on %s: %s", topic, exc)
            return
        device, nonce = request.get("device"), request.get("nonce")
        if not isinstance(nonce, str) or not nonce.isalnum() or len(nonce) > 64:
            log.warning("enrolment: request without a usable nonce on %s", topic)
            return
        if renewal and topic != proto.renew_topic(str(device)):
            log.warning("enrolment: renewal for %r arrived on %s; ignored", device, topic)
            return
        answer_topic = proto.renewed_topic(device) if renewal else proto.reply_topic(nonce)
        try:
            cert = self.renew(request) if renewal else self.enrol(request)
            reply = {"status": "ok", "certificate": cert, "ca": self._ca_pem()}
            self.granted += 1
            log.info("enrolment: %s certificate for %s", "renewed" if renewal else "issued",
                     device)
        except Refused as exc:
            reply = {"status": "refused", "reason": str(exc)}
            self.refused += 1
            log.warning("enrolment: refused %s: %s", device, exc)
        link.publish(answer_topic, canonical({"v": 1, "type": "enrol.reply", "device": device,
                                              "nonce": nonce, **reply}), qos=1)

    # -- decisions ----------------------------------------------------------------------------

    def enrol(self, request: dict) -> str:
        device, token = request.get("device"), request.get("token")
        if request.get("type") != "enrol.request" or not isinstance(token, str):
            raise Refused("not an enrolment request with a token")
        record = self.tokens.get(token)
        if record is None or record["device"] != device:
            raise Refused("unknown token, or a token issued for another device")
        if record["used_at"] is not None:
            if self._repeats(record, request):
                return record["certificate"]       # the same request again: same answer
            raise Refused("this token was already used; ask for a new one")
        if record["expires"] < time.time():
            raise Refused("the token has expired; ask for a new one")
        verifier = self._check(request)
        self._refuse_revoked(device)
        registered = self._registered(device)
        if registered is not None and registered.kid != verifier.kid and not record["replace"]:
            raise Refused(f"{device} is already registered with another signing key; a "
                          "replacement needs a token issued with --replace")
        certificate = self._sign(request["csr"], device)
        self._register(device, request["signing_key"])
        self.tokens.spend(token, request["csr"], request["signing_key"], certificate)
        return certificate

    def _repeats(self, record: dict, request: dict) -> bool:
        """Whether `request` asks again for what the spent token `record` was granted: a
        valid request for the same TLS public key and common name, signed by the same
        signing key. Compared as keys, not as PEM bytes: an ECDSA signature is randomised,
        so a CSR made again over the same key differs byte for byte."""
        try:
            verifier = self._check(request)
        except Refused:
            return False
        granted_csr = x509.load_pem_x509_csr(record["csr"].encode())
        asked_csr = x509.load_pem_x509_csr(request["csr"].encode())
        granted_key = Verifier.from_pem(record["signing_key"].encode())
        return _spki(asked_csr.public_key()) == _spki(granted_csr.public_key()) and \
            asked_csr.subject == granted_csr.subject and granted_key.kid == verifier.kid

    def renew(self, request: dict) -> str:
        device = request.get("device")
        if request.get("type") != "renew.request":
            raise Refused("not a renewal request")
        verifier = self._check(request)
        self._refuse_revoked(device)
        registered = self._registered(device)
        if registered is None or registered.kid != verifier.kid:
            raise Refused("a renewal must be signed by the device's registered signing key")
        return self._sign(request["csr"], device)

    def _refuse_revoked(self, device: str) -> None:
        if is_revoked(self.devices_dir, device):
            raise Refused(f"{device} is revoked at the bank (cocoon-ingest revoke); a device "
                          "that replaces it is enrolled under a new device id")

    def _check(self, request: dict) -> Verifier:
        device = request.get("device")
        if not isinstance(device, str) or not DEVICE_ID_RE.match(device) or \
                device in proto.RESERVED_IDS:
            raise Refused(f"{device!r} is not a valid device id")
        try:
            verifier = proto.verify_request(request)
        except (CocoonError, KeyError, TypeError, AttributeError) as exc:
            raise Refused(f"the request's signature does not verify ({exc})") from None
        try:
            csr = x509.load_pem_x509_csr(str(request.get("csr", "")).encode())
        except ValueError:
            raise Refused("the CSR is not a PEM certificate signing request") from None
        if not csr.is_signature_valid:
            raise Refused("the CSR's signature is not valid")
        cn = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if len(cn) != 1 or cn[0].value != device:
            raise Refused(f"the CSR must name the device ({device}) as its common name")
        key = csr.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise Refused("the TLS key must be ECDSA P-256")
        return verifier

    def _registered(self, device: str) -> Verifier | None:
        path = self.devices_dir / f"{device}.pem"
        return Verifier.from_file(path) if path.exists() else None

    def _register(self, device: str, signing_key_pem: str) -> None:
        write_atomic(self.devices_dir / f"{device}.pem", signing_key_pem.encode())

    def _sign(self, csr_pem: str, device: str) -> str:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        now = dt.datetime.now(dt.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device)]))
            .issuer_name(self.ca_cert.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=self.settings.cert_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.ca_key.public_key()), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        self.tokens.record_issued(device, pem)
        return pem

    def _ca_pem(self) -> str:
        return self.ca_cert.public_bytes(serialization.Encoding.PEM).decode()


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)

"""The enrolment protocol: how a freshly provisioned device gets its TLS certificate, and renews it.

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

import secrets

from agent.contract.envelope import parse_json_object, sign_object, verify_object
from agent.contract.errors import CocoonError

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

"""Signed JSON envelopes: RFC 8785 canonical bytes (agent.contract.canonical), a detached
signature in `sig`.

Events, acks and commands are all signed the same way: the signature covers the RFC 8785
canonical JSON of the object without its `sig` member, and travels as unpadded base64url. RFC
8785 admits only integers within +-2**53 (and no Decimal), so exact quantities travel as strings.
"""

from __future__ import annotations

import json

from agent.contract.canonical import (  # noqa: F401 (the envelope's bytes, re-exported)
    MAX_SAFE_INT,
    canonical,
    check_values,
    sha256_hex,
)
from agent.contract.errors import EventFormatError, SignatureError
from agent.contract.signing import Signer, Verifier, b64url, b64url_decode


def sign_object(unsigned: dict, signer: Signer) -> dict:
    """Return a copy of `unsigned` with `sig` over its canonical form."""
    if "sig" in unsigned:
        raise EventFormatError("object to sign already has a sig")
    signed = dict(unsigned)
    signed["sig"] = b64url(signer.sign(canonical(unsigned)))
    return signed


def verify_object(signed: dict, verifier: Verifier, alg: str | None = None) -> None:
    """Raise SignatureError unless `signed['sig']` verifies with the pinned key."""
    if not isinstance(signed, dict) or "sig" not in signed:
        raise SignatureError("message carries no signature")
    body = {k: v for k, v in signed.items() if k != "sig"}
    verifier.verify(
        alg or signed.get("alg", verifier.alg),
        signed.get("kid"),
        canonical(body),
        b64url_decode(signed["sig"]),
    )


def parse_json_object(data: bytes | str, what: str = "message") -> dict:
    """Parse untrusted JSON text into a dict, with clear errors and no float surprises."""
    try:
        obj = json.loads(data, parse_float=_reject_float, parse_constant=_reject_float)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise EventFormatError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise EventFormatError(f"{what} must be a JSON object")
    return obj


def _reject_float(text: str):
    raise ValueError(f"non-integer number {text!r} (exact values travel as strings)")

"""Acknowledgements from the ingest: the only thing that lets the outbox forget an event.

An ack `{v, device, seq, hash, ts, kid, sig}` says "every event of this device up to `seq` is
stored, and event `seq` has this hash". A broker's PUBACK never means that. The agent trusts an
ack only after its signature verifies against the pinned ingest key; the outbox then checks the
watermark and the hash before pruning anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.contract.clock import utc_timestamp
from agent.contract.envelope import parse_json_object, sign_object, verify_object
from agent.contract.errors import EventFormatError, SignatureError
from agent.contract.events import HEX64_RE
from agent.contract.signing import Signer, Verifier

ACK_FIELDS = {"v", "device", "seq", "hash", "ts", "kid", "sig"}


@dataclass(frozen=True)
class Ack:
    device: str
    seq: int
    hash: str
    ts: str = ""    # the ingest's clock when it made the ack (signed with it)


def make_ack(device: str, seq: int, hash_hex: str, signer: Signer) -> dict:
    return sign_object(
        {"v": 1, "device": device, "seq": seq, "hash": hash_hex, "ts": utc_timestamp(),
         "kid": signer.kid},
        signer,
    )


def parse_ack(payload: bytes, verifier: Verifier, device: str) -> Ack:
    """Parse and verify an ack for `device`; raise EventFormatError or SignatureError."""
    msg = parse_json_object(payload, "ack")
    if set(msg) != ACK_FIELDS:
        raise EventFormatError(f"ack fields must be {sorted(ACK_FIELDS)}")
    if msg["v"] != 1 or type(msg["seq"]) is not int or msg["seq"] < 1:
        raise EventFormatError("ack v must be 1 and seq an integer >= 1")
    if not isinstance(msg["hash"], str) or not HEX64_RE.match(msg["hash"]):
        raise EventFormatError("ack hash must be 64 lowercase hex digits")
    verify_object(msg, verifier, alg=verifier.alg)
    if msg["device"] != device:
        raise SignatureError(f"ack is for device {msg['device']!r}, not {device!r}")
    return Ack(msg["device"], msg["seq"], msg["hash"], msg["ts"] if isinstance(msg["ts"], str)
               else "")

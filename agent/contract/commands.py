"""Signed commands from the bank and the backend: the envelope, who signs which type, parsing.

The device admits commands in agent.spine.dispatcher; the bank's tools make them here. A
command `{v, id, device, type, issued, expires, body, kid, sig}` is signed like every envelope
(agent.contract.envelope); which key must sign it depends on its type (`SIGNER_OF`): the bank's
for money and collateral decisions, the backend's for operational data.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from agent.contract.clock import utc_timestamp
from agent.contract.envelope import parse_json_object, sign_object
from agent.contract.errors import EventFormatError
from agent.contract.signing import Signer

BANK = "bank"
BACKEND = "backend"
# Which key must sign which command type (docs/events.md, "Commands").
SIGNER_OF = {
    "payment.confirmed": BANK,
    "pledge": BANK,
    "pledge.create": BANK,      # the same command by its earlier name, still accepted
    "release.authorize": BANK,
    "price_table.set": BACKEND,
    "blacklist.set": BACKEND,
    "config.set": BACKEND,
    "time.hint": BACKEND,
}
# Event types are dotted; a command type may be one word (the bank's `pledge`).
COMMAND_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
COMMAND_FIELDS = {"v", "id", "device", "type", "issued", "expires", "body", "kid", "sig"}
CLOCK_SKEW = timedelta(minutes=5)
MAX_ID_LEN = 128


@dataclass(frozen=True)
class Command:
    id: str
    device: str
    type: str
    issued: datetime
    expires: datetime
    body: dict
    kid: str
    #: The whole signed message, as admitted: kept by a handler that must be able to show the
    #: signature again later (a price table is verified anew at every use).
    signed: dict | None = None


def make_command(device: str, type_: str, body: dict, signer: Signer, *,
                 expires_in_s: float = 3600, command_id: str | None = None,
                 now: datetime | None = None) -> dict:
    now = now or datetime.now(timezone.utc)
    return sign_object(
        {
            "v": 1,
            "id": command_id or str(uuid.uuid4()),
            "device": device,
            "type": type_,
            "issued": utc_timestamp(now),
            "expires": utc_timestamp(now + timedelta(seconds=expires_in_s)),
            "body": body,
            "kid": signer.kid,
        },
        signer,
    )


def parse_command(payload: bytes) -> dict:
    msg = parse_json_object(payload, "command")
    if set(msg) != COMMAND_FIELDS:
        raise EventFormatError(f"command fields must be {sorted(COMMAND_FIELDS)}")
    if msg["v"] != 1:
        raise EventFormatError("command v must be 1")
    if not isinstance(msg["id"], str) or not 0 < len(msg["id"]) <= MAX_ID_LEN:
        raise EventFormatError("command id must be a string of 1-128 characters")
    if not isinstance(msg["type"], str) or not COMMAND_TYPE_RE.match(msg["type"]):
        raise EventFormatError("command type must be a lowercase name, dotted or not")
    if not isinstance(msg["body"], dict):
        raise EventFormatError("command body must be an object")
    return msg

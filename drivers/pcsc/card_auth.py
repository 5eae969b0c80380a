"""Card authentication for CPU cards: a challenge the card answers with its own key.

The issuer signature proves the holder data was issued for this chip serial, but a full copy of
a CPU card (serial included, on a programmable card) would pass it. A card that holds a private
key it never reveals cannot be copied that way: at issuing the card generates an Ed25519 key
pair (GENERATE ASYMMETRIC KEY PAIR, `00 46 00 00 00`), and its public key is written to the
card (SFI 6, template 74) and covered by the issuer signature. At a swipe the station sends a
fresh random challenge (INTERNAL AUTHENTICATE, `00 88 00 00 10 <challenge> 00`) and checks the
64-byte answer against that public key.

    answer = Ed25519 signature over  "COCOON-CARD-AUTH-1" 00 || len(UID) || UID || challenge
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .errors import CardStatusError, FileNotFound, RecordNotFound

SFI_AUTH_KEY = 6
TAG_AUTH_KEY = 0x74
TAG_KEY_ALG = 0xC1
TAG_PUBLIC_KEY = 0xC2
ALG_ED25519 = 0x01
CHALLENGE_LEN = 16
DOMAIN = b"COCOON-CARD-AUTH-1\x00"


def parse_auth_record(record: bytes) -> tuple[bytes, bytes] | None:
    """(template as stored, raw public key), or None for a blank record."""
    from .farmer_card import CardFormatError, _body_len, _template, parse_tlvs

    what = "card authentication key record"
    if not record or all(b == 0xFF for b in record):
        return None
    template = _template(record, TAG_AUTH_KEY, what)
    fields = dict(parse_tlvs(template[len(template) - _body_len(template):], what))
    if fields.get(TAG_KEY_ALG) != bytes((ALG_ED25519,)) or len(fields.get(TAG_PUBLIC_KEY,
                                                                          b"")) != 32:
        raise CardFormatError(f"the {what} is malformed or uses an unknown algorithm; the card "
                              "is not ours")
    return template, fields[TAG_PUBLIC_KEY]


def build_auth_record(public_key: bytes) -> bytes:
    from .farmer_card import tlv

    return tlv(TAG_AUTH_KEY, tlv(TAG_KEY_ALG, bytes((ALG_ED25519,)))
               + tlv(TAG_PUBLIC_KEY, public_key))


def generate_key_apdu() -> bytes:
    return bytes.fromhex("0046000000")


def internal_authenticate_apdu(challenge: bytes) -> bytes:
    return bytes((0x00, 0x88, 0x00, 0x00, len(challenge))) + challenge + b"\x00"


def auth_message(uid: bytes, challenge: bytes) -> bytes:
    return DOMAIN + bytes((len(uid),)) + uid + challenge


def read_auth_record(transport) -> tuple[bytes, bytes] | None:
    """The card's authentication key record, or None when the card has none."""
    from .farmer_card import read_record_apdu

    try:
        record = transport.transmit(read_record_apdu(SFI_AUTH_KEY, 1)).data
    except (FileNotFound, RecordNotFound):
        return None
    return parse_auth_record(record)


def generate_card_key(transport) -> bytes | None:
    """Ask the card to make its key pair; the auth record to write, or None when the card
    cannot (an older card without the command)."""
    try:
        raw = transport.transmit(generate_key_apdu()).data
    except CardStatusError:
        return None
    parsed = parse_auth_record(raw)
    if parsed is None:
        return None
    return parsed[0]


def challenge_card(transport, uid: bytes, public_key: bytes, *,
                   random: Callable[[int], bytes] = os.urandom) -> str:
    """"" when the card proves it holds the key, else why not (words for the clerk)."""
    challenge = random(CHALLENGE_LEN)
    try:
        answer = transport.transmit(internal_authenticate_apdu(challenge)).data
    except CardStatusError as exc:
        return (f"the card refused the authentication challenge ({exc}); it may be a copy: "
                "keep it and send the farmer to the cooperative office")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(answer,
                                                              auth_message(uid, challenge))
    except (InvalidSignature, ValueError):
        return ("the card failed the authentication challenge: it is not the card the "
                "cooperative issued (a copy?); keep it and send the farmer to the office")
    return ""

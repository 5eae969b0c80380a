"""Card authentication for CPU cards: challenges that a copy of the card cannot answer.

Two schemes ([card] auth, docs/card.md). The PSAM scheme (the default, as Chinese CPU cards
do it): the card holds 3DES or SM4 keys diversified by its serial from master keys that stay
in the station's PSAM; `psam_authenticate` runs INTERNAL AUTHENTICATE (the card proves its
key) and GET CHALLENGE / EXTERNAL AUTHENTICATE (the station proves itself), the PSAM computing
the cryptograms (drivers/pcsc/psam.py). Below, first, the card's own key pair:

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
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .errors import CardStatusError, FileNotFound, RecordNotFound
from .psam import USAGE_EXTERNAL, USAGE_INTERNAL

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


# -- the PSAM scheme: symmetric keys diversified from the PSAM's master keys -------------------
#
# The card holds two keys diversified by its chip serial (drivers/pcsc/symmetric.py): key 01
# proves the card to the station, key 02 the station to the card. The station never holds
# either: its PSAM computes them (drivers/pcsc/psam.py). Challenges are one block of the
# PSAM's algorithm (8 bytes for 3DES, 16 for SM4).
#
#   INTERNAL AUTHENTICATE  00 88 00 01 <b> <random> 00  -> ENC(card key 01, random)
#   GET CHALLENGE          00 84 00 00 <b>              -> the card's random
#   EXTERNAL AUTHENTICATE  00 82 00 02 <b> ENC(card key 02, card's random)  -> 9000 / 63CX

CARD_KID_INTERNAL = 0x01
CARD_KID_EXTERNAL = 0x02


@dataclass(frozen=True)
class SymmetricOutcome:
    """How a card met the PSAM challenge: `result` is "ok", "unable" (the card has no such
    key or command: an older card, or another issuer's), "failed" (a wrong cryptogram: not
    the card that was issued) or "station_refused" (the card did not accept the station's
    proof: the PSAM and the card belong to different key sets). `detail` says what was seen."""

    result: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.result == "ok"


def sym_internal_authenticate_apdu(challenge: bytes) -> bytes:
    return bytes((0x00, 0x88, 0x00, CARD_KID_INTERNAL, len(challenge))) + challenge + b"\x00"


def get_challenge_apdu(length: int) -> bytes:
    return bytes((0x00, 0x84, 0x00, 0x00, length))


def external_authenticate_apdu(cryptogram: bytes) -> bytes:
    return bytes((0x00, 0x82, 0x00, CARD_KID_EXTERNAL, len(cryptogram))) + cryptogram


def psam_authenticate(transport, psam, card_id: bytes, *,
                      random: Callable[[int], bytes] = os.urandom) -> SymmetricOutcome:
    """Mutual authentication of the card in `transport` through `psam` (a selected
    drivers.pcsc.psam.Psam): the card answers the station's random with its key 01, then the
    station answers the card's random with key 02. PsamError when the PSAM fails; CardRemoved
    and the other transport errors pass through."""
    import hmac

    block = psam.block
    challenge = random(block)
    try:
        answer = transport.transmit(sym_internal_authenticate_apdu(challenge)).data
    except CardStatusError as exc:
        return SymmetricOutcome("unable", str(exc))
    expected = psam.cryptogram(USAGE_INTERNAL, card_id, challenge)
    if not hmac.compare_digest(answer, expected):
        return SymmetricOutcome("failed", f"{len(answer)}-byte answer does not match the "
                                          f"PSAM's {psam.algorithm} cryptogram")
    try:
        theirs = transport.transmit(get_challenge_apdu(block)).data
    except CardStatusError as exc:
        return SymmetricOutcome("unable", str(exc))
    if len(theirs) != block:
        return SymmetricOutcome("unable", f"GET CHALLENGE gave {len(theirs)} bytes, "
                                          f"{block} asked")
    proof = psam.cryptogram(USAGE_EXTERNAL, card_id, theirs)
    try:
        transport.transmit(external_authenticate_apdu(proof))
    except CardStatusError as exc:
        return SymmetricOutcome("station_refused", str(exc))
    return SymmetricOutcome("ok")

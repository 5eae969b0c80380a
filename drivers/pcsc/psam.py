"""The station's PSAM: the secure access module in the reader's SAM slot, through pcscd.

The PSAM holds the cooperative's master keys and never lets them out. Given a card's 8-byte
identifier it diversifies a master key inside itself and encrypts what the station hands it
with the card's key, as PBOC PSAMs do:

    SELECT the PSAM application         00 A4 04 00 08 F0 43 4F 43 4F 4F 4E 50 00
        -> FCI  6F .. 84 08 <AID> A5 03 C1 01 <alg>     (alg 01 3DES, 02 SM4)
    INIT FOR DESCRYPT (DELIVERY KEY)    80 1A <usage> <version> 08 <card id>
        -> 9000: the diversified key is loaded for the next command
    CIPHER DATA                         80 FA 00 00 <n> <n bytes, whole blocks> 00
        -> the n bytes encrypted (ECB) with the diversified key

Usages in the cooperative's PSAM (its key table, docs/card.md): 41 the cards' internal
authentication key, 42 their external authentication key; key version 01.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import symmetric
from .errors import CardStatusError, FileNotFound, PcscError

PSAM_AID = bytes.fromhex("F0434F434F4F4E50")        # F0 "COCOONP"
USAGE_INTERNAL = 0x41      # the card proves itself (INTERNAL AUTHENTICATE)
USAGE_EXTERNAL = 0x42      # the station proves itself (EXTERNAL AUTHENTICATE)
KEY_VERSION = 0x01
TAG_FCI, TAG_AID, TAG_PROPRIETARY, TAG_ALG = 0x6F, 0x84, 0xA5, 0xC1


class PsamError(PcscError):
    """The station's PSAM is missing, is not the cooperative's, or refused a command. The
    message is for the clerk and the technician: without it no CPU card can be checked."""


def select_apdu() -> bytes:
    return bytes((0x00, 0xA4, 0x04, 0x00, len(PSAM_AID))) + PSAM_AID + b"\x00"


def init_for_descrypt_apdu(usage: int, version: int, factors: bytes) -> bytes:
    return bytes((0x80, 0x1A, usage, version, len(factors))) + factors


def cipher_data_apdu(data: bytes) -> bytes:
    return bytes((0x80, 0xFA, 0x00, 0x00, len(data))) + data + b"\x00"


def parse_fci(fci: bytes) -> int:
    """The algorithm code in the PSAM application's FCI; PsamError when it is not ours."""
    from .farmer_card import CardFormatError, _body_len, _template, parse_tlvs

    try:
        template = _template(fci, TAG_FCI, "PSAM's answer to SELECT")
        fields = dict(parse_tlvs(template[len(template) - _body_len(template):],
                                 "PSAM's answer to SELECT"))
        proprietary = dict(parse_tlvs(fields.get(TAG_PROPRIETARY, b""), "PSAM's FCI"))
    except CardFormatError as exc:
        raise PsamError(f"the card in the SAM slot is not the cooperative's PSAM ({exc})"
                        ) from None
    alg = proprietary.get(TAG_ALG, b"")
    if fields.get(TAG_AID) != PSAM_AID or len(alg) != 1 or alg[0] not in symmetric.NAMES:
        raise PsamError("the card in the SAM slot is not the cooperative's PSAM (its "
                        "application does not name a known algorithm)")
    return alg[0]


@dataclass
class Psam:
    """A selected PSAM behind `transport` (an ApduTransport to the SAM slot)."""

    transport: object
    alg: int = 0

    @classmethod
    def select(cls, transport) -> Psam:
        try:
            fci = transport.transmit(select_apdu()).data
        except FileNotFound:
            raise PsamError(f"the card in {transport.reader!r} has no PSAM application of "
                            "the cooperative: put the cooperative's PSAM in the SAM slot"
                            ) from None
        except CardStatusError as exc:
            raise PsamError(f"the PSAM in {transport.reader!r} refused to be selected "
                            f"({exc})") from None
        return cls(transport, parse_fci(fci))

    @property
    def block(self) -> int:
        return symmetric.block_size(self.alg)

    @property
    def algorithm(self) -> str:
        return symmetric.NAMES[self.alg]

    def cryptogram(self, usage: int, card_id: bytes, data: bytes) -> bytes:
        """`data` encrypted with the card's key of `usage` (diversified by `card_id`)."""
        try:
            self.transport.transmit(init_for_descrypt_apdu(usage, KEY_VERSION, card_id))
            out = self.transport.transmit(cipher_data_apdu(data)).data
        except CardStatusError as exc:
            raise PsamError(f"the station's PSAM refused to compute a card cryptogram "
                            f"({exc}); check that it is the cooperative's PSAM") from None
        except PcscError as exc:        # pulled out of the SAM slot, reader gone, pcscd down
            raise PsamError(f"the station's PSAM stopped answering ({exc})") from None
        if len(out) != len(data):
            raise PsamError(f"the station's PSAM answered {len(out)} bytes for "
                            f"{len(data)}: it is not working as a PSAM should")
        return out

    def close(self) -> None:
        self.transport.close()

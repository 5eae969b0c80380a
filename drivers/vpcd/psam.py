"""A virtual PSAM in a vpcd reader slot: the cooperative's master keys, PBOC-style commands.

Answers what drivers/pcsc/psam.py sends, with the status words a PSAM gives:

    00 A4 04 00  SELECT the PSAM application      FCI 9000; 6A82 another AID; 6A86 P1 not 04
    80 1A u v    INIT FOR DESCRYPT (card id)      9000; 6A88 no key (u, v); 6700 factors not
                                                  1-3 x 8 bytes; 6982 before SELECT
    80 FA 00 00  CIPHER DATA                      the blocks ECB-encrypted 9000; 6985 before
                                                  INIT FOR DESCRYPT; 6700 not whole blocks;
                                                  6A86 P1 other than 00 (no MAC mode here)
    other CLA for 1A/FA: 6E00; other INS: 6D00

The master keys never leave it: nothing reads them back. `card_keys(alg, masters, serial)`
gives the keys a card is personalised with, as the issuer's key management system would.
"""

from __future__ import annotations

from drivers.pcsc import symmetric
from drivers.pcsc.card_auth import CARD_KID_EXTERNAL, CARD_KID_INTERNAL
from drivers.pcsc.farmer_card import tlv
from drivers.pcsc.psam import (
    KEY_VERSION,
    PSAM_AID,
    TAG_AID,
    TAG_ALG,
    TAG_FCI,
    TAG_PROPRIETARY,
    USAGE_EXTERNAL,
    USAGE_INTERNAL,
)

from .card import (
    SW_CLA,
    SW_CONDITIONS,
    SW_FILE_NOT_FOUND,
    SW_INS,
    SW_KEY_NOT_FOUND,
    SW_OK,
    SW_SECURITY,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    VirtualCard,
    make_atr,
)


def card_keys(alg: int, masters: dict[int, bytes], serial: bytes) -> dict[int, bytes]:
    """The card's keys (by key id) diversified from the PSAM's masters by its serial."""
    return {CARD_KID_INTERNAL: symmetric.diversify(alg, masters[USAGE_INTERNAL], serial),
            CARD_KID_EXTERNAL: symmetric.diversify(alg, masters[USAGE_EXTERNAL], serial)}


class VirtualPsam(VirtualCard):
    atr = make_atr(b"cocoon-psam")

    def __init__(self, reader, *, alg: int, masters: dict[int, bytes],
                 version: int = KEY_VERSION, aid: bytes = PSAM_AID, **kwargs):
        super().__init__(reader, **kwargs)
        symmetric.block_size(alg)               # a known algorithm
        self.alg = alg
        self.masters = dict(masters)            # usage -> master key
        self.version = version
        self.aid = aid
        self.selected = False
        self.loaded: bytes | None = None        # the diversified key of the last 80 1A

    def _handle(self, payload: bytes) -> bytes | None:
        if len(payload) == 1 and payload[0] in (0x00, 0x01, 0x02):
            self.selected, self.loaded = False, None     # power cycle or reset
        return super()._handle(payload)

    def fci(self) -> bytes:
        return tlv(TAG_FCI, tlv(TAG_AID, self.aid)
                   + tlv(TAG_PROPRIETARY, tlv(TAG_ALG, bytes((self.alg,)))))

    def respond(self, apdu: bytes) -> bytes:
        cla, ins, p1, p2 = apdu[:4]
        lc = apdu[4] if len(apdu) > 5 else 0
        body = apdu[5:5 + lc]
        if ins == 0xA4:
            if p1 != 0x04:
                return SW_WRONG_P1P2
            self.selected, self.loaded = body == self.aid, None
            return self.fci() + SW_OK if self.selected else SW_FILE_NOT_FOUND
        if ins not in (0x1A, 0xFA):
            return SW_INS
        if cla != 0x80:
            return SW_CLA
        if not self.selected:
            return SW_SECURITY
        if ins == 0x1A:
            self.loaded = None
            master = self.masters.get(p1)
            if master is None or p2 != self.version:
                return SW_KEY_NOT_FOUND
            if not body or len(body) % 8 or len(body) > 24 or len(apdu) != 5 + lc:
                return SW_WRONG_LENGTH
            self.loaded = symmetric.diversify(self.alg, master, body)
            return SW_OK
        if p1 != 0x00 or p2 != 0x00:
            return SW_WRONG_P1P2
        if self.loaded is None:
            return SW_CONDITIONS
        if not body or len(body) % symmetric.block_size(self.alg):
            return SW_WRONG_LENGTH
        return symmetric.encrypt(self.alg, self.loaded, body) + SW_OK

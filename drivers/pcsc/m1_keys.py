"""MIFARE Classic keys and access conditions for the farmer card (docs/card.md, "M1 card").

Why per-card keys: a MIFARE Classic sector is only as safe as its keys, and those keys can be
recovered from any one card in minutes. With one key for every card, one cracked card opens
them all; with keys diversified from the card's UID and the cooperative's master key (NXP
AN10922, AES-128 CMAC), a cracked card opens only itself, and its data copied onto a card with
another UID no longer opens with that card's keys.

Why these access bits: data blocks are readable with key A or B and writable with key B only;
the trailer's keys and access bits are writable with key B only (data blocks `100`, trailer
`011` in the datasheet's tables). A station reads with key A and writes with key B; it never
writes a trailer, which only issuing does.

Pure functions; `cryptography` provides AES-CMAC.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

MASTER_KEY_LEN = 16
KEY_LEN = 6
KEY_A, KEY_B = 0x60, 0x61               # the authentication command's key-type byte
TRANSPORT_KEY = b"\xff" * KEY_LEN       # keys A and B of a card as delivered

#: Diversification constant of AN10922 for an AES-128 key.
AN10922_AES128 = 0x01
#: Our system identifier in every diversification input: 16 bytes, so that the input is always
#: longer than one AES block (see `an10922_aes128`).
SYSTEM_ID = b"COCOON-FARMER-M1"

# Access conditions C1 C2 C3 as a 3-bit number (C1 the high bit), as in the datasheet's tables.
DATA_TRANSPORT = 0b000                  # read, write, increment, decrement with key A or B
DATA_READ_AB_WRITE_B = 0b100            # read with A or B, write with B, no value operations
TRAILER_TRANSPORT = 0b001               # key A writes keys and access bits; key B readable
TRAILER_KEYS_BY_B = 0b011               # key B writes keys and access bits; A or B reads bits

#: General-purpose byte 9 of a trailer: the value cards are delivered with.
GPB = 0x69


class AccessBitsError(ValueError):
    """Three access-bit bytes whose inverted copies do not match: a card given these bytes in
    a sector trailer blocks that sector for good."""


def an10922_aes128(master_key: bytes, m: bytes) -> bytes:
    """The 16-byte key diversified from `master_key` with input `m` (AN10922, AES-128).

    AN10922 computes a CMAC over 0x01 || M padded to exactly two AES blocks. For 16 to 31
    bytes of M, 0x01 || M is longer than one block, and the standard CMAC (RFC 4493) pads and
    masks it identically; shorter inputs would be padded to one block by the standard and are
    refused here rather than computed wrongly."""
    if len(master_key) != MASTER_KEY_LEN:
        raise ValueError(f"the M1 master key must be {MASTER_KEY_LEN} bytes, "
                         f"got {len(master_key)}")
    if not 16 <= len(m) <= 31:
        raise ValueError(f"AN10922 diversification input must be 16 to 31 bytes here, "
                         f"got {len(m)}")
    mac = CMAC(algorithms.AES(bytes(master_key)))
    mac.update(bytes((AN10922_AES128,)) + bytes(m))
    return mac.finalize()


def diversification_input(uid: bytes, sector: int, key_type: int) -> bytes:
    """M = UID (4 or 7 bytes) || 'A' or 'B' || sector number || SYSTEM_ID."""
    if len(uid) not in (4, 7):
        raise ValueError(f"a MIFARE Classic UID is 4 or 7 bytes, got {len(uid)}")
    if not 0 <= sector <= 15:
        raise ValueError(f"a MIFARE Classic 1K has sectors 0 to 15, not {sector}")
    letter = {KEY_A: b"A", KEY_B: b"B"}[key_type]
    return bytes(uid) + letter + bytes((sector,)) + SYSTEM_ID


def sector_key(master_key: bytes, uid: bytes, sector: int, key_type: int) -> bytes:
    """Key A or B (`KEY_A`, `KEY_B`) of one sector of the card `uid`: the first 6 bytes of the
    AN10922 diversified key."""
    return an10922_aes128(master_key, diversification_input(uid, sector, key_type))[:KEY_LEN]


class CardKeys:
    """The keys of one card, derived once each."""

    def __init__(self, master_key: bytes, uid: bytes):
        if len(master_key) != MASTER_KEY_LEN:
            raise ValueError(f"the M1 master key must be {MASTER_KEY_LEN} bytes, "
                             f"got {len(master_key)}")
        self._master = bytes(master_key)
        self.uid = bytes(uid)
        self._cache: dict[tuple[int, int], bytes] = {}

    def key(self, sector: int, key_type: int) -> bytes:
        found = self._cache.get((sector, key_type))
        if found is None:
            found = sector_key(self._master, self.uid, sector, key_type)
            self._cache[(sector, key_type)] = found
        return found

    def trailer(self, sector: int) -> bytes:
        """The sector trailer issuing writes: key A, access bits, GPB, key B."""
        key_a, key_b = self.key(sector, KEY_A), self.key(sector, KEY_B)
        if key_a == key_b or TRANSPORT_KEY in (key_a, key_b):
            raise ValueError(f"the keys derived for sector {sector} are unusable (equal or the "
                             "transport key); this card cannot be issued")
        return trailer(key_a, ISSUED_ACCESS, key_b)


def access_bytes(conditions: tuple[int, int, int, int]) -> bytes:
    """Bytes 6, 7 and 8 of a sector trailer for the access conditions (C1 C2 C3 as 3-bit
    numbers) of blocks 0, 1, 2 and the trailer (block 3), with the inverted copies:

        byte 6: ~C2(3..0) ~C1(3..0)   byte 7: C1(3..0) ~C3(3..0)   byte 8: C3(3..0) C2(3..0)
    """
    if len(conditions) != 4 or any(not 0 <= c <= 7 for c in conditions):
        raise ValueError("access conditions are four numbers from 0 to 7")
    c1 = c2 = c3 = 0
    for block, cond in enumerate(conditions):
        c1 |= (cond >> 2 & 1) << block
        c2 |= (cond >> 1 & 1) << block
        c3 |= (cond & 1) << block
    return bytes(((~c2 & 0xF) << 4 | (~c1 & 0xF), c1 << 4 | (~c3 & 0xF), c3 << 4 | c2))


def parse_access_bytes(raw: bytes) -> tuple[int, int, int, int]:
    """The access conditions of blocks 0-3 in trailer bytes 6-8; AccessBitsError when an
    inverted copy does not match."""
    if len(raw) != 3:
        raise AccessBitsError(f"access bits are 3 bytes, got {len(raw)}")
    b6, b7, b8 = raw
    c1, c2, c3 = b7 >> 4, b8 & 0xF, b8 >> 4
    if (b6 & 0xF, b6 >> 4, b7 & 0xF) != (~c1 & 0xF, ~c2 & 0xF, ~c3 & 0xF):
        raise AccessBitsError(f"access bits {bytes(raw).hex(' ').upper()} do not match their "
                              "inverted copies")
    return tuple((c1 >> b & 1) << 2 | (c2 >> b & 1) << 1 | (c3 >> b & 1) for b in range(4))


def trailer(key_a: bytes, access: bytes, key_b: bytes, gpb: int = GPB) -> bytes:
    """A 16-byte sector trailer; refuses access bits that would block the sector."""
    if len(key_a) != KEY_LEN or len(key_b) != KEY_LEN:
        raise ValueError("MIFARE Classic keys are 6 bytes")
    parse_access_bytes(access)
    return bytes(key_a) + bytes(access) + bytes((gpb,)) + bytes(key_b)


TRANSPORT_ACCESS = access_bytes((DATA_TRANSPORT,) * 3 + (TRAILER_TRANSPORT,))
ISSUED_ACCESS = access_bytes((DATA_READ_AB_WRITE_B,) * 3 + (TRAILER_KEYS_BY_B,))


"""A virtual ACR122U-style reader with a MIFARE Classic 1K card in its field.

What the code under test sees through pcscd: the PC/SC part 3 storage-card ATR, and the ACS
pseudo-APDUs (class FF): GET UID `FF CA 00 00 00`, LOAD KEY `FF 82 00 slot 06 key` (slots 00
and 01), AUTHENTICATE `FF 86 00 00 05 01 00 block 60|61 slot`, READ BINARY `FF B0 00 block 10`
and UPDATE BINARY `FF D6 00 block 10 data`. Answers: 9000; 6300 when authentication fails or
the access bits forbid the operation; 6982 for a block of a sector that is not authenticated.

The card model follows the MIFARE Classic 1K datasheet (NXP MF1S50yyX): 16 sectors of 4
blocks, block 0 the manufacturer block (UID, BCC, SAK, ATQA), the last block of each sector
its trailer (key A, access bits with their inverted copies, GPB, key B). The access tables are
written out here from the datasheet, independently of the driver's encoder, so that a mistake
in one is caught by the other:
- a key B that the trailer's conditions make readable cannot be used: the authentication
  succeeds, every access after it is refused;
- key A is never readable (it reads as zeros); trailer writes need every part writable;
- a trailer written with access bits whose inverted copies do not match blocks its sector
  for good, as on the chip.

With `halt_on_failed_auth` the chip behaves as many readers' chips are reported to: after a
failed authentication it stops answering (every command but GET UID gets 6300) until the field
is switched off and on (a power-off or reset from pcscd, or the card put back).

Test hooks: `blocks` (edit directly), `trailer_writes` (block numbers, in order),
`pull_on(predicate, tear=False)` pulls the card out when a command matches; with `tear` an
UPDATE is half applied first (the first 8 bytes new, the rest old), as a card leaving the
field during an EEPROM write may be.
"""

from __future__ import annotations

from collections.abc import Callable

from .vcard import SW_OK, VirtualCard

ATR_MIFARE_1K = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")
TRANSPORT_TRAILER = bytes.fromhex("FFFFFFFFFFFF FF0780 69 FFFFFFFFFFFF".replace(" ", ""))

SW_FAILED = b"\x63\x00"
SW_NOT_AUTHENTICATED = b"\x69\x82"
SW_WRONG_LENGTH = b"\x67\x00"
SW_FUNCTION = b"\x6a\x81"
SW_CLASS = b"\x6e\x00"

A, B, AB, NEVER = "A", "B", "AB", ""

#: Data blocks, by C1 C2 C3: (read, write, increment, decrement/transfer/restore).
DATA_TABLE = {
    (0, 0, 0): (AB, AB, AB, AB),
    (0, 1, 0): (AB, NEVER, NEVER, NEVER),
    (1, 0, 0): (AB, B, NEVER, NEVER),
    (1, 1, 0): (AB, B, B, AB),
    (0, 0, 1): (AB, NEVER, NEVER, AB),
    (0, 1, 1): (B, B, NEVER, NEVER),
    (1, 0, 1): (B, NEVER, NEVER, NEVER),
    (1, 1, 1): (NEVER, NEVER, NEVER, NEVER),
}

#: Sector trailer, by C1 C2 C3: (key A write, access bits read, access bits write,
#: key B read, key B write). Key A is never readable.
TRAILER_TABLE = {
    (0, 0, 0): (A, A, NEVER, A, A),
    (0, 1, 0): (NEVER, A, NEVER, A, NEVER),
    (1, 0, 0): (B, AB, NEVER, NEVER, B),
    (1, 1, 0): (NEVER, AB, NEVER, NEVER, NEVER),
    (0, 0, 1): (A, A, A, A, A),
    (0, 1, 1): (B, AB, B, NEVER, B),
    (1, 0, 1): (NEVER, AB, B, NEVER, NEVER),
    (1, 1, 1): (NEVER, AB, NEVER, NEVER, NEVER),
}


def conditions(trailer: bytes, block: int) -> tuple[int, int, int] | None:
    """C1 C2 C3 of block 0-3 of a sector from its trailer's bytes 6-8, or None when an
    inverted copy does not match (datasheet: byte 6 = ~C2 ~C1, byte 7 = C1 ~C3,
    byte 8 = C3 C2, block n in bit n of each nibble)."""
    b6, b7, b8 = trailer[6], trailer[7], trailer[8]
    c1, c2, c3 = b7 >> (4 + block) & 1, b8 >> block & 1, b8 >> (4 + block) & 1
    n1, n2, n3 = b6 >> block & 1, b6 >> (4 + block) & 1, b7 >> block & 1
    if (n1, n2, n3) != (c1 ^ 1, c2 ^ 1, c3 ^ 1):
        return None
    return c1, c2, c3


def manufacturer_block(uid: bytes) -> bytes:
    if len(uid) == 4:
        bcc = uid[0] ^ uid[1] ^ uid[2] ^ uid[3]
        head = uid + bytes((bcc, 0x08, 0x04, 0x00))        # BCC, SAK 08, ATQA 0004
    else:
        head = uid + bytes((0x08, 0x44, 0x00))              # 7-byte UID: SAK, ATQA 0044
    return (head + b"COCOON-VCARD")[:16]


class M1Card(VirtualCard):
    atr = ATR_MIFARE_1K

    def __init__(self, reader, *, uid: bytes = bytes.fromhex("A1B2C3D4"),
                 halt_on_failed_auth: bool = False, **kwargs):
        super().__init__(reader, **kwargs)
        self.halt_on_failed_auth = halt_on_failed_auth
        self.halted = False
        if len(uid) not in (4, 7):
            raise ValueError("a MIFARE Classic UID is 4 or 7 bytes")
        self.uid = bytes(uid)
        self.blocks = [bytearray(16) for _ in range(64)]
        self.blocks[0][:] = manufacturer_block(self.uid)
        for sector in range(16):
            self.blocks[4 * sector + 3][:] = TRANSPORT_TRAILER
        self.key_slots: dict[int, bytes] = {}
        self.authenticated: tuple[int, str] | None = None      # sector, "A" or "B"
        self.locked: set[int] = set()
        self.trailer_writes: list[int] = []
        self._pull: Callable[[bytes], bool] | None = None
        self._tear = False

    def pull_on(self, predicate: Callable[[bytes], bool] | None, *, tear: bool = False) -> None:
        self._pull, self._tear = predicate, tear

    def copy_from(self, other: M1Card) -> None:
        """Every block but block 0 from another card, trailers included: a clone made from a
        dump whose keys were cracked, on a card with its own UID."""
        for block in range(1, 64):
            self.blocks[block][:] = other.blocks[block]

    def _handle(self, payload: bytes) -> bytes | None:
        if len(payload) == 1 and payload[0] in (0x00, 0x01, 0x02):
            self.authenticated = None           # the field dropped: the chip starts over
            self.halted = False
        return super()._handle(payload)

    # -- APDUs -----------------------------------------------------------------------------

    def respond(self, apdu: bytes) -> bytes:
        if self._pull is not None and self._pull(apdu):
            self._pull = None
            if self._tear and apdu[1] == 0xD6 and len(apdu) == 21:
                block = apdu[3]
                self.blocks[block][:8] = apdu[5:13]
            self.remove()
            return SW_OK                        # never delivered
        if apdu[0] != 0xFF:
            return SW_CLASS
        ins, p1, p2 = apdu[1], apdu[2], apdu[3]
        if ins == 0xCA:
            return self.uid + SW_OK if p1 == 0 else SW_FUNCTION
        if self.halted and ins != 0x82:
            return SW_FAILED
        if ins == 0x82:
            if p1 != 0 or p2 > 1 or len(apdu) != 11 or apdu[4] != 6:
                return SW_FAILED
            self.key_slots[p2] = bytes(apdu[5:11])
            return SW_OK
        if ins == 0x86:
            return self._authenticate(apdu)
        if ins == 0xB0:
            if p1 != 0 or len(apdu) != 5 or apdu[4] != 16 or p2 > 63:
                return SW_WRONG_LENGTH
            return self._read(p2)
        if ins == 0xD6:
            if p1 != 0 or len(apdu) != 21 or apdu[4] != 16 or p2 > 63:
                return SW_WRONG_LENGTH
            return self._write(p2, apdu[5:21])
        return SW_FUNCTION

    def _authenticate(self, apdu: bytes) -> bytes:
        self.authenticated = None
        if len(apdu) != 10 or apdu[4] != 5 or apdu[5:7] != b"\x01\x00":
            return SW_FAILED
        block, key_type, slot = apdu[7], apdu[8], apdu[9]
        if block > 63 or key_type not in (0x60, 0x61) or slot not in self.key_slots:
            return SW_FAILED
        sector = block // 4
        trailer = self.blocks[4 * sector + 3]
        key = trailer[:6] if key_type == 0x60 else trailer[10:16]
        if sector in self.locked or self.key_slots[slot] != key:
            self.halted = self.halt_on_failed_auth
            return SW_FAILED
        self.authenticated = (sector, "A" if key_type == 0x60 else "B")
        return SW_OK

    def _key_type(self, block: int) -> str | None:
        """The key the sector of `block` is opened with, or None; key B counts as no key when
        the trailer makes it readable (datasheet: such a key B cannot serve)."""
        sector = block // 4
        if self.authenticated is None or self.authenticated[0] != sector:
            return None
        key = self.authenticated[1]
        trailer_cond = conditions(self.blocks[4 * sector + 3], 3)
        if key == "B" and trailer_cond is not None and TRAILER_TABLE[trailer_cond][3] != NEVER:
            return ""
        return key

    def _read(self, block: int) -> bytes:
        key = self._key_type(block)
        if key is None:
            return SW_NOT_AUTHENTICATED
        if not key:
            return SW_FAILED
        cond = conditions(self.blocks[4 * (block // 4) + 3], block % 4)
        if cond is None:
            return SW_FAILED
        if block % 4 != 3:
            return bytes(self.blocks[block]) + SW_OK if key in DATA_TABLE[cond][0] \
                else SW_FAILED
        rights = TRAILER_TABLE[cond]
        data = bytearray(16)                                    # key A reads as zeros
        if key in rights[1]:
            data[6:10] = self.blocks[block][6:10]
        if key in rights[3]:
            data[10:16] = self.blocks[block][10:16]
        return bytes(data) + SW_OK

    def _write(self, block: int, data: bytes) -> bytes:
        key = self._key_type(block)
        if key is None:
            return SW_NOT_AUTHENTICATED
        if not key:
            return SW_FAILED
        sector = block // 4
        cond = conditions(self.blocks[4 * sector + 3], block % 4)
        if cond is None:
            return SW_FAILED
        if block % 4 != 3:
            if block == 0 or key not in DATA_TABLE[cond][1]:    # block 0: written at the fab
                return SW_FAILED
            self.blocks[block][:] = data
            return SW_OK
        key_a_write, _, access_write, _, key_b_write = TRAILER_TABLE[cond]
        if not all(key in right for right in (key_a_write, access_write, key_b_write)):
            return SW_FAILED
        self.blocks[block][:] = data
        self.trailer_writes.append(block)
        if any(conditions(data, n) is None for n in range(4)):
            self.locked.add(sector)                             # the chip blocks the sector
        return SW_OK

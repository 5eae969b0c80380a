"""A virtual ISO 7816-4 CPU card with the farmer-card file layout (docs/card.md).

Implements SELECT by AID, READ BINARY / UPDATE BINARY (short EF by SFI in P1), READ RECORD /
UPDATE RECORD (record number in P1, SFI in P2 with mode 4) and APPEND RECORD (cyclic: the
oldest record is replaced, the new one becomes record 1). Status words: 9000; 6982 for file
commands before the application is selected; 6A82 unknown AID or file; 6A83 no such record;
6CXX when Le is neither 00 nor the exact length; 61XX chaining when an answer is longer than
`chunk` bytes (GET RESPONSE); 6700 wrong length; 6986 writing a read-only file.

Card authentication: with `own_key`, GENERATE ASYMMETRIC KEY PAIR and INTERNAL AUTHENTICATE
with P2 00 (Ed25519, drivers/pcsc/card_auth.py); with `sym_keys` (the PSAM scheme: key 01 and
key 02 diversified from the PSAM's masters, drivers/vpcd/psam.py's `card_keys`), INTERNAL
AUTHENTICATE with P2 01, GET CHALLENGE and EXTERNAL AUTHENTICATE with P2 02: 6A88 for a key the
card does not hold, 6A86 for an INTERNAL AUTHENTICATE key reference it does not know, 6985 for
EXTERNAL AUTHENTICATE without a fresh challenge (each challenge serves once), 63CX for a wrong
cryptogram (X tries left, 15 at first, back to 15 on success) and 6983 once blocked. A card with
neither answers 6D00 to all of them, as older CPU cards do.

Test hooks: `files` (edit the contents directly), `pull_on(predicate)` pulls the card out
when a command matches, as a farmer would mid-read or mid-write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .card import (
    SW_BLOCKED,
    SW_CONDITIONS,
    SW_FILE_NOT_FOUND,
    SW_INS,
    SW_KEY_NOT_FOUND,
    SW_NOT_ALLOWED,
    SW_OK,
    SW_RECORD_NOT_FOUND,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    VirtualCard,
    make_atr,
)
from .card import SW_SECURITY as SW_NOT_SELECTED

AID = bytes.fromhex("F0434F434F4F4E01")
EXTERNAL_TRIES = 15


@dataclass
class BinaryFile:
    data: bytearray
    writable: bool = True


@dataclass
class RecordFile:
    record_size: int
    capacity: int
    cyclic: bool = False
    records: list[bytes] = field(default_factory=list)   # record 1 first


def blank_files(serial: bytes, sales_capacity: int) -> dict[int, BinaryFile | RecordFile]:
    return {
        1: RecordFile(255, 1, records=[b"\xff" * 255]),            # holder, linear fixed
        2: BinaryFile(bytearray(4)),                               # counter
        3: RecordFile(128, sales_capacity, cyclic=True),           # sales, cyclic
        4: BinaryFile(bytearray(serial), writable=False),          # chip serial
        5: RecordFile(80, 1, records=[b"\xff" * 80]),              # issuer signature
        6: RecordFile(40, 1, records=[b"\xff" * 40]),              # card authentication key
    }


class CpuFarmerCard(VirtualCard):
    atr = make_atr(b"cocoon-cpu")

    def __init__(self, reader, *, serial: bytes = bytes.fromhex("8600112233445566"),
                 sales_capacity: int = 5, chunk: int = 128, aid: bytes = AID,
                 own_key: bool = True, sym_alg: int | None = None,
                 sym_keys: dict[int, bytes] | None = None, **kwargs):
        super().__init__(reader, **kwargs)
        self.own_key = own_key          # False: an older card without GENERATE/INTERNAL AUTH
        self.auth_private = None        # the key the card generated; never leaves the card
        self.sym_alg = sym_alg          # the PSAM scheme's algorithm (symmetric.ALG_*)
        self.sym_keys = dict(sym_keys or {})    # key id -> diversified key
        self.challenge: bytes | None = None     # the last GET CHALLENGE, until used
        self.external_tries = EXTERNAL_TRIES
        self.station_authenticated = False      # EXTERNAL AUTHENTICATE passed this session
        self.files = blank_files(serial, sales_capacity)
        self.chunk = chunk
        self.aid = aid
        self.selected = False
        self.pending = b""
        self._pull: Callable[[bytes], bool] | None = None

    def pull_on(self, predicate: Callable[[bytes], bool] | None) -> None:
        self._pull = predicate

    def _handle(self, payload: bytes) -> bytes | None:
        if len(payload) == 1 and payload[0] in (0x00, 0x01, 0x02):
            self.selected = False                   # power cycle or reset: selection lost
            self.challenge, self.station_authenticated = None, False
        return super()._handle(payload)

    # -- APDUs -----------------------------------------------------------------------------

    def respond(self, apdu: bytes) -> bytes:
        if self._pull is not None and self._pull(apdu):
            self._pull = None
            self.remove()
            return SW_OK                            # never delivered
        cla, ins, p1, p2 = apdu[:4]
        body, le = _split(apdu)
        if ins == 0xC0:
            size = le or 256
            out, self.pending = self.pending[:size], self.pending[size:]
            return out + (_more(len(self.pending)) if self.pending else SW_OK)
        self.pending = b""
        if ins == 0xA4:
            if p1 != 0x04:
                return SW_WRONG_P1P2
            self.selected = body == self.aid
            return SW_OK if self.selected else SW_FILE_NOT_FOUND
        if ins in (0x84, 0x82) or (ins == 0x88 and p2 != 0x00):
            if not self.sym_keys:
                return SW_INS if not self.own_key or ins != 0x88 else SW_WRONG_P1P2
            if not self.selected:
                return SW_NOT_SELECTED
            return self._symmetric(ins, p2, body, le)
        if ins in (0x46, 0x88) and self.own_key:
            if not self.selected:
                return SW_NOT_SELECTED
            return self._authentication(ins, body, le)
        if ins == 0x88 and self.sym_keys:
            return SW_WRONG_P1P2                    # P2 00: no Ed25519 key on this card
        if ins not in (0xB0, 0xD6, 0xB2, 0xDC, 0xE2):
            return SW_INS
        if not self.selected:
            return SW_NOT_SELECTED
        if ins in (0xB0, 0xD6):
            return self._binary(ins, p1, p2, body, le)
        return self._record(ins, p1, p2, body, le)

    def _answer(self, data: bytes, le: int | None) -> bytes:
        if le is None:
            return SW_WRONG_LENGTH if data else SW_OK
        if le != 0 and le != len(data) and len(data) <= 256:
            return bytes((0x6C, len(data) & 0xFF))
        if len(data) > self.chunk:
            self.pending = data[self.chunk:]
            return data[:self.chunk] + _more(len(self.pending))
        return data + SW_OK

    def _authentication(self, ins, body, le) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        from drivers.pcsc import card_auth

        if ins == 0x46:                 # GENERATE ASYMMETRIC KEY PAIR
            self.auth_private = Ed25519PrivateKey.generate()
            public = self.auth_private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            return self._answer(card_auth.build_auth_record(public), le)
        if self.auth_private is None:   # INTERNAL AUTHENTICATE before a key exists
            return SW_CONDITIONS
        if len(body) != card_auth.CHALLENGE_LEN:
            return SW_WRONG_LENGTH
        serial = bytes(self.files[4].data)
        return self._answer(self.auth_private.sign(card_auth.auth_message(serial, body)), le)

    def _symmetric(self, ins, p2, body, le) -> bytes:
        import hmac
        import os

        from drivers.pcsc import symmetric

        if ins == 0x84:                 # GET CHALLENGE
            if le not in (4, 8, 16):
                return SW_WRONG_LENGTH
            self.challenge = os.urandom(le)
            return self.challenge + SW_OK
        key = self.sym_keys.get(p2)
        if key is None:
            return SW_KEY_NOT_FOUND if ins == 0x82 else SW_WRONG_P1P2
        if ins == 0x88:                 # INTERNAL AUTHENTICATE: the card proves itself
            if not body or len(body) % symmetric.block_size(self.sym_alg):
                return SW_WRONG_LENGTH
            return self._answer(symmetric.encrypt(self.sym_alg, key, body), le)
        if self.external_tries == 0:    # EXTERNAL AUTHENTICATE: the station proves itself
            return SW_BLOCKED
        challenge, self.challenge = self.challenge, None
        if challenge is None or len(challenge) % symmetric.block_size(self.sym_alg):
            return SW_CONDITIONS
        if len(body) != len(challenge):
            return SW_WRONG_LENGTH
        if not hmac.compare_digest(body, symmetric.encrypt(self.sym_alg, key, challenge)):
            self.external_tries -= 1
            self.station_authenticated = False
            return bytes((0x63, 0xC0 | self.external_tries))
        self.external_tries = EXTERNAL_TRIES
        self.station_authenticated = True
        return SW_OK

    def _binary(self, ins, p1, p2, body, le) -> bytes:
        if not p1 & 0x80:
            return SW_WRONG_P1P2            # only short-EF addressing
        ef = self.files.get(p1 & 0x1F)
        if not isinstance(ef, BinaryFile):
            return SW_FILE_NOT_FOUND
        if ins == 0xB0:
            if p2 >= len(ef.data):
                return SW_WRONG_P1P2
            return self._answer(bytes(ef.data[p2:]), le)
        if not ef.writable:
            return SW_NOT_ALLOWED
        if p2 + len(body) > len(ef.data):
            return SW_WRONG_LENGTH
        ef.data[p2:p2 + len(body)] = body
        return SW_OK

    def _record(self, ins, p1, p2, body, le) -> bytes:
        ef = self.files.get(p2 >> 3)
        if not isinstance(ef, RecordFile):
            return SW_FILE_NOT_FOUND
        if ins == 0xE2:
            if p1 != 0 or p2 & 0x07:
                return SW_WRONG_P1P2
            if not body or len(body) > ef.record_size:
                return SW_WRONG_LENGTH
            record = body + b"\xff" * (ef.record_size - len(body))
            if ef.cyclic:
                ef.records = [record, *ef.records][:ef.capacity]
            elif len(ef.records) < ef.capacity:
                ef.records.append(record)
            else:
                return b"\x6a\x84"          # not enough memory
            return SW_OK
        if p2 & 0x07 != 0x04 or p1 == 0:
            return SW_WRONG_P1P2
        if p1 > len(ef.records):
            return SW_RECORD_NOT_FOUND
        if ins == 0xB2:
            return self._answer(ef.records[p1 - 1], le)
        if not body or len(body) > ef.record_size:
            return SW_WRONG_LENGTH
        ef.records[p1 - 1] = body + b"\xff" * (ef.record_size - len(body))
        return SW_OK


def _more(left: int) -> bytes:
    return bytes((0x61, min(left, 256) & 0xFF))


def _split(apdu: bytes) -> tuple[bytes, int | None]:
    """(command data, Le or None) of a short APDU."""
    if len(apdu) == 4:
        return b"", None
    if len(apdu) == 5:
        return b"", apdu[4]
    lc = apdu[4]
    return apdu[5:5 + lc], (apdu[5 + lc] if len(apdu) > 5 + lc else None)

"""The farmer-card application on a MIFARE Classic 1K (M1) card, through an ACS-style reader.

    data = read_m1_card(transport, issuer_verifier, master_key)      # FarmerCardData
    card = accepted_card(data)                                        # card_kind "m1"
    append_m1_sale(transport, sale, master_key=master_key, expected_counter=card.card_counter)

The same holder TLV (template 70), sale TLV (template 72), issuer signature (template 73 over
`signed_bytes(uid, holder)`) and strict parsing as the CPU card (`farmer_card`), laid out in
sectors (docs/card.md, "M1 card"): sectors 1-7 the holder and signature, sector 8 the
transaction counter as two value-format blocks, sectors 9-15 three sale slots of 7 blocks.
Sectors are opened with keys diversified per card (`m1_keys`): key A reads, key B writes.

An ACS reader speaks to the chip through PC/SC pseudo-APDUs (class FF): GET UID, LOAD KEY into
a reader key slot, AUTHENTICATE a block with key A or B from a slot, READ and UPDATE BINARY of
one 16-byte block. The chip answers a failure with 6300 and nothing more, so what failed is
told by which command it was (`M1AuthenticationFailed`, `M1AccessDenied`).
"""

from __future__ import annotations

import dataclasses
import logging

from . import farmer_card as fc
from .apdu import Response, header
from .errors import CardStatusError, PcscError
from .m1_keys import KEY_A, KEY_B, TRANSPORT_KEY, CardKeys
from .status import raise_for_status

log = logging.getLogger(__name__)

FarmerCardData = fc.FarmerCardData

BLOCK = 16
KEY_SLOT = 0x00                     # a volatile key slot of the reader (ACR122U: 00-01)

HOLDER_SECTORS = tuple(range(1, 8))     # holder template, signature template, 00 padding
COUNTER_SECTOR = 8                      # block 32 counter, 33 its copy, 34 reserved (zero)
SALES_SECTORS = tuple(range(9, 16))     # 21 blocks: SALE_SLOTS slots of SLOT_BLOCKS blocks
USED_SECTORS = HOLDER_SECTORS + (COUNTER_SECTOR,) + SALES_SECTORS
SLOT_BLOCKS = 7                         # 112 bytes: the largest sale template fits
COUNTER_BLOCK = 4 * COUNTER_SECTOR
COUNTER_COPY_BLOCK = COUNTER_BLOCK + 1
MAX_COUNTER = 0x7FFFFFFF                # a value block holds a signed 32-bit number

#: Historical bytes of the PC/SC part 3 ATR of a storage card: category 80, tag 4F length 0C,
#: RID A0 00 00 03 06 (PC/SC Workgroup), standard 03 (ISO 14443 A part 3), card name 00 01
#: (MIFARE Classic 1K), four RFU bytes.
M1_HISTORICAL = bytes.fromhex("80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00")


def _data_blocks(sectors) -> tuple[int, ...]:
    return tuple(4 * s + i for s in sectors for i in range(3))


HOLDER_BLOCKS = _data_blocks(HOLDER_SECTORS)
SALES_BLOCKS = _data_blocks(SALES_SECTORS)
SALE_SLOTS = len(SALES_BLOCKS) // SLOT_BLOCKS
HOLDER_AREA = len(HOLDER_BLOCKS) * BLOCK


# -- errors ----------------------------------------------------------------------------------

class M1Error(PcscError):
    """Root of the errors particular to MIFARE Classic cards."""


class M1AuthenticationFailed(M1Error, CardStatusError):
    """6300 to AUTHENTICATE: the key is not this sector's (or the card left the field)."""

    meaning = "authentication failed: the key is not this sector's"


class M1AccessDenied(M1Error, CardStatusError):
    """6300 or 6982 to READ or UPDATE BINARY: the sector is not authenticated, or its access
    bits forbid the operation with the key used."""

    meaning = "refused: the sector is not opened, or its access bits forbid this"


class M1ReaderRefused(M1Error, CardStatusError):
    """6300 to LOAD KEY or GET UID: the reader refused (no such key slot, no card in the
    field)."""

    meaning = "the reader refused the command"


class NotAnM1Card(fc.NotAFarmerCard, M1Error):
    """The card's ATR is not a MIFARE Classic 1K's."""


class BlankM1Card(fc.CardFormatError, M1Error):
    """The card still carries its transport keys: it was never issued."""


class ForeignKeys(fc.CardRefused, M1Error):
    """A sector opens with neither this card's keys nor the transport keys: a card of another
    system, issued with another master key, or data copied from another card."""


# -- ATR ---------------------------------------------------------------------------------------

def _historical_bytes(atr: bytes) -> bytes | None:
    """The historical bytes of an ATR (ISO 7816-3), or None when it is malformed."""
    if len(atr) < 2 or atr[0] not in (0x3B, 0x3F):
        return None
    count, pos, indicator = atr[1] & 0x0F, 2, atr[1] >> 4
    while True:
        pos += bin(indicator & 0x07).count("1")         # TA, TB, TC
        if not indicator & 0x08:
            break
        if pos >= len(atr):
            return None
        indicator = atr[pos] >> 4                       # TDi
        pos += 1
    if pos + count > len(atr):
        return None
    return bytes(atr[pos:pos + count])


def is_m1_atr(atr: bytes) -> bool:
    """Whether an ACS-style reader announces a MIFARE Classic 1K with this ATR (PC/SC part 3,
    e.g. 3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A)."""
    return _historical_bytes(bytes(atr)) == M1_HISTORICAL


# -- the reader's pseudo-APDUs -------------------------------------------------------------

def get_uid_apdu() -> bytes:
    return bytes.fromhex("FFCA000000")


def load_key_apdu(key: bytes, slot: int = KEY_SLOT) -> bytes:
    return bytes((0xFF, 0x82, 0x00, slot, len(key))) + bytes(key)


def authenticate_apdu(block: int, key_type: int, slot: int = KEY_SLOT) -> bytes:
    return bytes((0xFF, 0x86, 0x00, 0x00, 0x05, 0x01, 0x00, block, key_type, slot))


def read_block_apdu(block: int) -> bytes:
    return bytes((0xFF, 0xB0, 0x00, block, BLOCK))


def update_block_apdu(block: int, data: bytes) -> bytes:
    if len(data) != BLOCK:
        raise ValueError(f"a MIFARE Classic block is {BLOCK} bytes, got {len(data)}")
    return bytes((0xFF, 0xD6, 0x00, block, BLOCK)) + bytes(data)


class M1Session:
    """Blocks of one MIFARE Classic card through an `ApduTransport`, keeping track of which
    sector is authenticated with which key, so that each sector is opened once per pass."""

    def __init__(self, transport):
        self.transport = transport
        self._opened: tuple[int, int, bytes] | None = None     # sector, key type, key

    def _command(self, apdu: bytes, on_6300: type[CardStatusError]) -> Response:
        response = self.transport.transmit(apdu, check=False)
        if response.sw == 0x6300 or (response.sw == 0x6982 and on_6300 is M1AccessDenied):
            self._opened = None
            raise on_6300(header(apdu), response)
        if not response.ok:
            self._opened = None
        return raise_for_status(apdu, response)

    def uid(self) -> bytes:
        uid = self._command(get_uid_apdu(), M1ReaderRefused).data
        if len(uid) not in (4, 7):
            raise fc.CardFormatError(f"the card's UID is {len(uid)} bytes; a MIFARE Classic 1K "
                                     "has 4 or 7: the card is not ours")
        return uid

    def open(self, sector: int, key_type: int, key: bytes) -> None:
        """Authenticate `sector` with key A or B; M1AuthenticationFailed if it is not the key."""
        if self._opened == (sector, key_type, key):
            return
        self._opened = None
        self._command(load_key_apdu(key), M1ReaderRefused)
        self._command(authenticate_apdu(4 * sector, key_type), M1AuthenticationFailed)
        self._opened = (sector, key_type, key)

    def try_open(self, sector: int, key_type: int, key: bytes) -> bool:
        try:
            self.open(sector, key_type, key)
        except M1AuthenticationFailed:
            # Many readers' chips stop answering after a wrong key until the card is selected
            # again: reset it, so the next key tried gets a fair answer.
            reconnect = getattr(self.transport, "reconnect", None)
            if reconnect is not None:
                reconnect()
            return False
        return True

    def read(self, block: int) -> bytes:
        data = self._command(read_block_apdu(block), M1AccessDenied).data
        if len(data) != BLOCK:
            raise fc.CardFormatError(f"block {block} came back with {len(data)} bytes, "
                                     f"{BLOCK} expected; remove the card and try again")
        return data

    def write(self, block: int, data: bytes) -> None:
        """Write a data block; a sector trailer is refused here (see `write_trailer`)."""
        if block % 4 == 3:
            raise ValueError(f"block {block} is a sector trailer: only issuing writes one")
        self._command(update_block_apdu(block, data), M1AccessDenied)

    def write_trailer(self, sector: int, data: bytes) -> None:
        """Replace a sector's keys and access bits: for issuing only (a wrong trailer locks
        the sector for good, so `m1_keys.trailer` has checked the access bits)."""
        self._command(update_block_apdu(4 * sector + 3, data), M1AccessDenied)


class _Card:
    """One pass over an issued card: opens each sector with this card's keys as needed."""

    def __init__(self, transport, master_key: bytes):
        if not is_m1_atr(transport.atr):
            raise NotAnM1Card("not a MIFARE Classic 1K card; ask the farmer for the card the "
                              "cooperative issued")
        self.session = M1Session(transport)
        self.uid = self.session.uid()
        self.keys = CardKeys(master_key, self.uid)

    def first_open(self, sector: int, key_type: int) -> None:
        """Open the first sector of a pass, telling a blank card and a foreign one apart."""
        if self.session.try_open(sector, key_type, self.keys.key(sector, key_type)):
            return
        if self.session.try_open(sector, KEY_A, TRANSPORT_KEY):
            raise BlankM1Card("the card is blank: it was never issued to a farmer")
        raise ForeignKeys("the card does not open with the cooperative's keys for this card: "
                          "it is from another system or a copy of another card; do not buy "
                          "on it and keep it for the cooperative office")

    def open(self, sector: int, key_type: int) -> None:
        if not self.session.try_open(sector, key_type, self.keys.key(sector, key_type)):
            raise ForeignKeys(f"sector {sector} of the card does not open with the "
                              "cooperative's keys: the card was issued incompletely or "
                              "altered; do not buy on it and send it to the cooperative office")

    def read(self, blocks, key_type: int) -> bytes:
        out = bytearray()
        for block in blocks:
            self.open(block // 4, key_type)
            out += self.session.read(block)
        return bytes(out)

    def write(self, block: int, data: bytes) -> None:
        self.open(block // 4, KEY_B)
        self.session.write(block, data)


# -- layout, pure ------------------------------------------------------------------------------

def parse_holder_area(area: bytes) -> tuple[fc.CardHolder, bytes, tuple[str, bytes] | None]:
    """(holder, the holder template as signed, signature or None) from sectors 1-7."""
    if all(b in fc.PADDING for b in area):
        raise fc.CardFormatError("the card holds no holder record: it was not issued "
                                 "completely; send it to the cooperative office")
    if area[0] != fc.TAG_HOLDER:
        return fc.parse_holder(area[:fc.MAX_RECORD])        # raises: wrong first tag
    length, pos = fc._length(area, 1, "holder record")
    end = pos + length
    if end > len(area):
        raise fc.CardFormatError(f"the holder record is cut short: {length} bytes announced, "
                                 f"{len(area) - pos} fit on the card; the card is damaged or "
                                 "not ours")
    holder, template = fc.parse_holder(area[:end])
    rest = area[end:]
    signature = None if all(b in fc.PADDING for b in rest) else fc.parse_signature(rest)
    return holder, template, signature


def build_holder_area(holder_record: bytes, signature_record: bytes) -> bytes:
    area = holder_record + signature_record
    if len(area) > HOLDER_AREA:
        raise ValueError(f"holder and signature are {len(area)} bytes, the card holds "
                         f"{HOLDER_AREA}")
    return area + bytes(HOLDER_AREA - len(area))


def encode_value_block(value: int, block: int) -> bytes:
    """MIFARE value-block format: value, its complement, value (4 bytes little-endian each),
    then the address byte, its complement, the address, its complement."""
    raw = value.to_bytes(4, "little", signed=True)
    inverted = bytes(~b & 0xFF for b in raw)
    return raw + inverted + raw + bytes((block, ~block & 0xFF, block, ~block & 0xFF))


def decode_value_block(data: bytes, block: int) -> int | None:
    """The value of a well-formed value block at `block`, else None (torn or not a counter)."""
    if len(data) != BLOCK or encode_value_block(0, block)[12:] != data[12:]:
        return None
    value = int.from_bytes(data[:4], "little", signed=True)
    if value < 0 or encode_value_block(value, block) != data:
        return None
    return value


def counter_of(primary: bytes, copy: bytes) -> int:
    """The transaction counter from its two blocks. The primary is written first, so a torn
    primary means a sale was being written with the copy's value + 1: that counter is counted
    as spent, never handed out again."""
    first = decode_value_block(primary, COUNTER_BLOCK)
    second = decode_value_block(copy, COUNTER_COPY_BLOCK)
    if first is None and second is None:
        raise fc.CardFormatError("the card's transaction counter is damaged; send the card to "
                                 "the cooperative office")
    if first is None:
        return min(second + 1, MAX_COUNTER)
    if second is None or first - second in (0, 1):
        return first
    raise fc.CardFormatError(f"the card's two counter copies disagree ({first} and {second}): "
                             "the card was altered; keep it for the cooperative office")


def slot_blocks(counter: int) -> tuple[int, ...]:
    """The blocks of the slot holding the sale with this counter (counter 1 in slot 0)."""
    index = (counter - 1) % SALE_SLOTS
    return SALES_BLOCKS[index * SLOT_BLOCKS:(index + 1) * SLOT_BLOCKS]


def sale_in_slot(data: bytes, counter: int) -> fc.CardSale | None:
    """The sale with `counter` from its slot, or None when the slot does not hold it (never
    written, a write cut short, or an older sale left by an interrupted write)."""
    if all(b in fc.PADDING for b in data):
        return None
    try:
        sale = fc.parse_sale(data)
    except fc.CardFormatError as exc:
        log.warning("m1 card: the slot of sale %d is unreadable (%s); counted as a gap",
                    counter, exc)
        return None
    if sale.counter == counter:
        return sale
    if sale.counter < counter and (counter - sale.counter) % SALE_SLOTS == 0:
        return None
    raise fc.CardFormatError(f"the slot of sale {counter} holds sale {sale.counter}: the card "
                             "was altered; keep it for the cooperative office")


# -- the card --------------------------------------------------------------------------------

def _read_counter(card: _Card, key_type: int) -> int:
    return counter_of(*(card.read((b,), key_type) for b in (COUNTER_BLOCK, COUNTER_COPY_BLOCK)))


def read_m1_card(transport, issuer_verifier, master_key: bytes) -> FarmerCardData:
    """Read and check the whole card with key A. Raises NotAnM1Card, BlankM1Card,
    ForeignKeys, CardFormatError, CardRemoved...; a signature that does not verify is
    reported in `signature_valid` and `refusal`, as for the CPU card."""
    card = _Card(transport, master_key)
    card.first_open(HOLDER_SECTORS[0], KEY_A)
    holder, template, signature = parse_holder_area(card.read(HOLDER_BLOCKS, KEY_A))
    counter = _read_counter(card, KEY_A)
    sales = []
    for number in range(counter, max(0, counter - SALE_SLOTS), -1):
        sale = sale_in_slot(card.read(slot_blocks(number), KEY_A), number)
        if sale is not None:
            sales.append(sale)
    refusal = fc.check_signature(card.uid, template, signature, issuer_verifier)
    return FarmerCardData(card.uid.hex().upper(), holder, counter, tuple(sales), not refusal,
                          refusal)


def accepted_card(data: FarmerCardData) -> fc.AcceptedCard:
    """The card's holder (card_kind "m1") for the next sale; CardRefused otherwise."""
    return dataclasses.replace(fc.accepted_card(data), card_kind="m1")


def append_m1_sale(transport, sale: dict, *, master_key: bytes,
                   expected_counter: int | None = None) -> int:
    """Write one sale with key B: the counter first (its block, then its copy), then the sale
    in the slot of that counter (its first block zeroed, the rest written, the first block
    last). A card pulled out at any point has a counter ahead of its last sale and never gives
    one counter to two sales. Returns the new counter; CounterMismatch when the card's
    counter moved since `expected_counter` was handed out. Never writes a sector trailer."""
    card = _Card(transport, master_key)
    card.first_open(COUNTER_SECTOR, KEY_B)
    counter = _read_counter(card, KEY_B) + 1
    if expected_counter is not None and counter != expected_counter:
        raise fc.CounterMismatch(f"the card's counter moved (now {counter - 1}, expected "
                                 f"{expected_counter - 1}): read the card again")
    if counter > MAX_COUNTER:
        raise fc.CardRefused("the card's transaction counter is exhausted: issue a new card")
    record = fc.build_sale(sale, counter)
    blocks = slot_blocks(counter)
    if len(record) > len(blocks) * BLOCK:
        raise ValueError(f"the sale is {len(record)} bytes, a slot holds {len(blocks) * BLOCK}")
    data = record + bytes(len(blocks) * BLOCK - len(record))
    card.write(COUNTER_BLOCK, encode_value_block(counter, COUNTER_BLOCK))
    card.write(COUNTER_COPY_BLOCK, encode_value_block(counter, COUNTER_COPY_BLOCK))
    card.write(blocks[0], bytes(BLOCK))
    for i, block in list(enumerate(blocks))[1:] + [(0, blocks[0])]:
        card.write(block, data[i * BLOCK:(i + 1) * BLOCK])
    return counter


def issue_m1_card(transport, holder: dict, issuer_signer, master_key: bytes) -> FarmerCardData:
    """Personalise a blank card (transport keys FF FF FF FF FF FF): holder and signature,
    counter 0, empty sale slots, then every used sector's trailer with this card's keys and
    access bits (key A reads, key B writes), the counter sector's last.

    A card whose counter sector already opens with this card's key is issued
    (CardAlreadyIssued): issuing again would reset its counter. A card pulled out during
    issuing keeps its transport keys on the counter sector and may be issued again: sectors
    already given their keys are written with key B, the others with the transport key A."""
    record = fc.build_holder(holder)
    card = _Card(transport, master_key)
    session, keys = card.session, card.keys
    if not session.try_open(COUNTER_SECTOR, KEY_A, TRANSPORT_KEY):
        if session.try_open(COUNTER_SECTOR, KEY_A, keys.key(COUNTER_SECTOR, KEY_A)):
            raise fc.CardAlreadyIssued("this card is already issued to a farmer; it cannot be "
                                       "issued again")
        raise ForeignKeys("the card is neither blank (transport keys) nor ours: it cannot be "
                          "issued")
    signature = fc.build_signature(issuer_signer.alg,
                                   issuer_signer.sign(fc.signed_bytes(card.uid, record)))
    area = build_holder_area(record, signature)
    contents = dict(zip(HOLDER_BLOCKS, (area[i:i + BLOCK] for i in range(0, HOLDER_AREA, BLOCK)),
                        strict=True))
    contents.update({b: bytes(BLOCK) for b in _data_blocks((COUNTER_SECTOR,) + SALES_SECTORS)})
    contents[COUNTER_BLOCK] = encode_value_block(0, COUNTER_BLOCK)
    contents[COUNTER_COPY_BLOCK] = encode_value_block(0, COUNTER_COPY_BLOCK)
    opener: dict[int, tuple[int, bytes]] = {}           # every sector checked before writing
    for sector in USED_SECTORS:
        for key_type, key in ((KEY_A, TRANSPORT_KEY), (KEY_B, keys.key(sector, KEY_B))):
            if session.try_open(sector, key_type, key):
                opener[sector] = (key_type, key)
                break
        else:
            raise ForeignKeys(f"sector {sector} opens with neither the transport keys nor "
                              "this card's keys: the card cannot be issued")
    for sector, (key_type, key) in opener.items():
        session.open(sector, key_type, key)
        for block in _data_blocks((sector,)):
            session.write(block, contents[block])
    blank = [s for s, (_, key) in opener.items() if key == TRANSPORT_KEY]
    for sector in sorted(blank, key=lambda s: s == COUNTER_SECTOR):
        session.open(sector, KEY_A, TRANSPORT_KEY)
        session.write_trailer(sector, keys.trailer(sector))
    holder_parsed, _ = fc.parse_holder(record)
    return FarmerCardData(card.uid.hex().upper(), holder_parsed, 0, (), True, "")

"""The farmer-card application on an ISO 7816-4 CPU card, through `ApduTransport`.

    data = read_farmer_card(transport, issuer_verifier)     # FarmerCardData
    card = accepted_card(data)                # AcceptedCard (holder, next counter), or refused
    append_sale(transport, {"date": ..., "voucher": ..., ...}, expected_counter=card.card_counter)

Layout (docs/card.md has the bytes): the application `F0 43 4F 43 4F 4F 4E 01` ("COCOON"
after a proprietary F0), the chip serial in a transparent file (SFI 4), the holder record
(SFI 1, record 1, a BER-TLV template 70), the issuer signature record (SFI 5, record 1,
template 73), the transaction counter (SFI 2, 4 bytes big-endian) and a cyclic file of the
last sales (SFI 3, template 72 per record, record 1 the newest).

Parsing is pure and strict: any deviation from the layout raises `CardFormatError` with words
the clerk can act on; a card whose signature does not verify is read (`signature_valid` False,
`refusal` says why) but `accepted_card` refuses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from . import card_auth
from .errors import FileNotFound, PcscError, RecordNotFound

AID = bytes.fromhex("F0434F434F4F4E01")

SFI_HOLDER = 1
SFI_COUNTER = 2
SFI_SALES = 3
SFI_SERIAL = 4
SFI_SIGNATURE = 5

SERIAL_LEN = 8
COUNTER_LEN = 4
MAX_RECORD = 255            # one short APDU (UPDATE RECORD's Lc) holds a whole record
MAX_SALES_READ = 32         # a cyclic file longer than this is not ours

TAG_HOLDER = 0x70
TAG_SALE = 0x72
TAG_SIGNATURE = 0x73
TAG_SIG_ALG = 0x80
TAG_SIG_VALUE = 0x9E

#: Signature algorithm byte in the signature record -> the signing algorithm's name.
SIG_ALGS = {0x01: "Ed25519", 0x02: "ES256"}

PADDING = frozenset((0x00, 0xFF))
_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]+)?$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


class CardFormatError(PcscError, ValueError):
    """The card answered, but what it holds does not follow the farmer-card layout (truncated,
    oversized, malformed or unknown fields). The message is for the clerk."""


class NotAFarmerCard(CardFormatError):
    """The card has no farmer-card application (SELECT answered 6A82)."""


class CardAlreadyIssued(PcscError):
    """`issue_cpu_card` was given a card that already holds a holder record."""


class CardRefused(PcscError):
    """The card was read but must not be bought on (no or forged issuer signature)."""


class CounterMismatch(PcscError):
    """The card's counter moved between reading the card and writing the sale."""


# -- fields ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Field:
    tag: int
    key: str
    kind: str           # "text" (UTF-8), "ascii", "int", "decimal", "date"
    max_len: int        # bytes of the value
    label: str          # plain words for the clerk


HOLDER_FIELDS = (
    _Field(0xC1, "farmer_id", "ascii", 20, "farmer id"),
    _Field(0xC2, "name", "text", 48, "name"),
    _Field(0xC3, "address", "text", 96, "address"),
    _Field(0xC4, "labour", "int", 2, "household labour"),
    _Field(0xC5, "mulberry_area_mu", "decimal", 10, "mulberry-leaf area (mu)"),
    _Field(0xC6, "silkworm_room_area_m2", "decimal", 10, "silkworm-room area (m2)"),
    _Field(0xC7, "account_ref", "ascii", 32, "bank account reference"),
)

SALE_FIELDS = (
    _Field(0xC1, "counter", "int", 4, "sale counter"),
    _Field(0xC2, "date", "date", 10, "sale date"),
    _Field(0xC3, "voucher", "ascii", 40, "voucher number"),
    _Field(0xC4, "grade", "text", 12, "grade"),
    _Field(0xC5, "net_g", "int", 4, "net weight (g)"),
    _Field(0xC6, "unit_price", "decimal", 12, "unit price"),
    _Field(0xC7, "amount", "decimal", 14, "amount"),
)


@dataclass(frozen=True)
class CardHolder:
    farmer_id: str
    name: str
    address: str
    labour: int
    mulberry_area_mu: str
    silkworm_room_area_m2: str
    account_ref: str


@dataclass(frozen=True)
class CardSale:
    counter: int
    date: str
    voucher: str
    grade: str
    net_g: int
    unit_price: str
    amount: str


@dataclass(frozen=True)
class FarmerCardData:
    """Everything read from a farmer card. `sales` newest first."""

    uid: str                    # chip serial, uppercase hex
    holder: CardHolder
    counter: int                # sales written so far (the last sale's counter)
    sales: tuple[CardSale, ...]
    signature_valid: bool
    refusal: str = ""           # why the card must not be bought on; "" when valid
    auth_key: bytes | None = None   # the card's own public key (card_auth), signed by the issuer


# -- BER-TLV (one-byte tags, definite lengths), pure ----------------------------------------

def _length(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """(length, position after it); minimal definite encodings only (short, 81, 82)."""
    if pos >= len(data):
        raise CardFormatError(f"the {what} is cut short (a length is missing); "
                              "the card is damaged: send it to the cooperative office")
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if count not in (1, 2):
        raise CardFormatError(f"the {what} has an invalid length byte {first:02X}; "
                              "the card is damaged or not ours")
    if pos + 1 + count > len(data):
        raise CardFormatError(f"the {what} is cut short (a length is missing); "
                              "the card is damaged: send it to the cooperative office")
    value = int.from_bytes(data[pos + 1:pos + 1 + count], "big")
    if value < (0x80 if count == 1 else 0x100):
        raise CardFormatError(f"the {what} has a badly encoded length; the card is not ours")
    return value, pos + 1 + count


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n <= 0xFF:
        return bytes((0x81, n))
    if n <= 0xFFFF:
        return bytes((0x82, n >> 8, n & 0xFF))
    raise ValueError(f"a TLV value of {n} bytes is too long")


def tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + encode_length(len(value)) + value


def parse_tlvs(data: bytes, what: str) -> list[tuple[int, bytes]]:
    """The (tag, value) pairs filling `data` exactly; CardFormatError otherwise."""
    out, pos = [], 0
    while pos < len(data):
        tag = data[pos]
        if tag & 0x1F == 0x1F:
            raise CardFormatError(f"the {what} uses a multi-byte tag {tag:02X}; "
                                  "the card is not ours")
        length, pos = _length(data, pos + 1, what)
        if pos + length > len(data):
            raise CardFormatError(f"the {what} is cut short: field {tag:02X} announces "
                                  f"{length} bytes, {len(data) - pos} are there; the card is "
                                  "damaged: send it to the cooperative office")
        out.append((tag, bytes(data[pos:pos + length])))
        pos += length
    return out


def _template(record: bytes, tag: int, what: str) -> bytes:
    """The value of the one template `tag` at the start of `record`; padding (00/FF) after
    it is allowed, anything else is not."""
    if not record:
        raise CardFormatError(f"the {what} is empty; the card is not personalised")
    if record[0] != tag:
        raise CardFormatError(f"the {what} does not start with tag {tag:02X} "
                              f"(found {record[0]:02X}); the card is not ours or is damaged")
    length, pos = _length(record, 1, what)
    if pos + length > len(record):
        raise CardFormatError(f"the {what} is cut short: {length} bytes announced, "
                              f"{len(record) - pos} read; the card is damaged: send it to "
                              "the cooperative office")
    if any(b not in PADDING for b in record[pos + length:]):
        raise CardFormatError(f"the {what} has unexpected bytes after its end; "
                              "the card is damaged or not ours")
    return bytes(record[:pos + length])


def _decode(field: _Field, value: bytes, what: str):
    if len(value) > field.max_len:
        raise CardFormatError(f"the {field.label} in the {what} is {len(value)} bytes, at most "
                              f"{field.max_len} are allowed; the card is not ours")
    if field.kind == "int":
        if not value or (len(value) > 1 and value[0] == 0):
            raise CardFormatError(f"the {field.label} in the {what} is not a valid number")
        return int.from_bytes(value, "big")
    try:
        text = value.decode("ascii" if field.kind != "text" else "utf-8")
    except UnicodeDecodeError:
        raise CardFormatError(f"the {field.label} in the {what} is not readable text; "
                              "the card is damaged or not ours") from None
    if not text or (field.kind == "text" and not text.isprintable()):
        raise CardFormatError(f"the {field.label} in the {what} is empty or unprintable")
    if field.kind == "ascii" and not (text.isprintable() and text.strip() == text):
        raise CardFormatError(f"the {field.label} in the {what} has invalid characters")
    if field.kind == "decimal" and not _DECIMAL.match(text):
        raise CardFormatError(f"the {field.label} in the {what} is not a decimal number: "
                              f"{text!r}")
    if field.kind == "date" and not _DATE.match(text):
        raise CardFormatError(f"the {field.label} in the {what} is not a date: {text!r}")
    return text


def _encode(field: _Field, value, what: str) -> bytes:
    if field.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{what}: {field.key} must be a non-negative integer")
        raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    else:
        if field.kind == "decimal" and isinstance(value, (int, Decimal)) \
                and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise ValueError(f"{what}: {field.key} must be a string, got {type(value).__name__}")
        raw = value.encode("utf-8")
    if len(raw) > field.max_len:
        raise ValueError(f"{what}: {field.key} is {len(raw)} bytes, at most {field.max_len}")
    try:
        _decode(field, raw, what)   # the same rules as reading: never write what we refuse
    except CardFormatError as exc:
        raise ValueError(f"{what}: {field.key} {value!r} is not valid ({exc})") from None
    return tlv(field.tag, raw)


def _parse_fields(body: bytes, fields: tuple[_Field, ...], what: str) -> dict:
    by_tag = {f.tag: f for f in fields}
    out: dict = {}
    for tag, value in parse_tlvs(body, what):
        field = by_tag.get(tag)
        if field is None:
            raise CardFormatError(f"the {what} has an unknown field {tag:02X}; "
                                  "the card is not ours or from a newer issuer")
        if field.key in out:
            raise CardFormatError(f"the {what} has the {field.label} twice; the card is not ours")
        out[field.key] = _decode(field, value, what)
    missing = [f.label for f in fields if f.key not in out]
    if missing:
        raise CardFormatError(f"the {what} lacks: {', '.join(missing)}; the card was not "
                              "issued completely: send it to the cooperative office")
    return out


def _build(tag: int, fields: tuple[_Field, ...], values: dict, what: str) -> bytes:
    unknown = set(values) - {f.key for f in fields}
    if unknown:
        raise ValueError(f"{what}: unknown fields {sorted(unknown)}")
    missing = [f.key for f in fields if f.key not in values]
    if missing:
        raise ValueError(f"{what}: missing fields {missing}")
    record = tlv(tag, b"".join(_encode(f, values[f.key], what) for f in fields))
    if len(record) > MAX_RECORD:
        raise ValueError(f"{what}: {len(record)} bytes, a record holds at most {MAX_RECORD}")
    return record


def parse_holder(record: bytes) -> tuple[CardHolder, bytes]:
    """The holder and the exact template bytes the issuer signed (padding excluded)."""
    what = "holder record"
    if len(record) > MAX_RECORD:
        raise CardFormatError(f"the {what} is {len(record)} bytes, at most {MAX_RECORD}; "
                              "the card is not ours")
    if record and all(b == 0xFF for b in record):
        raise CardFormatError("the card is blank: it was never issued to a farmer")
    template = _template(record, TAG_HOLDER, what)
    body = template[len(template) - _body_len(template):]
    return CardHolder(**_parse_fields(body, HOLDER_FIELDS, what)), template


def _body_len(template: bytes) -> int:
    length, _ = _length(template, 1, "record")
    return length


def build_holder(holder: dict) -> bytes:
    values = dict(holder)
    return _build(TAG_HOLDER, HOLDER_FIELDS, values, "holder")


def parse_sale(record: bytes) -> CardSale:
    what = "sales record"
    if len(record) > MAX_RECORD:
        raise CardFormatError(f"a {what} is {len(record)} bytes, at most {MAX_RECORD}")
    template = _template(record, TAG_SALE, what)
    body = template[len(template) - _body_len(template):]
    return CardSale(**_parse_fields(body, SALE_FIELDS, what))


def build_sale(sale: dict, counter: int) -> bytes:
    values = {**sale, "counter": counter}
    for key in ("unit_price", "amount"):
        if isinstance(values.get(key), Decimal):
            values[key] = str(values[key])
    return _build(TAG_SALE, SALE_FIELDS, values, "sale")


def parse_signature(record: bytes) -> tuple[str, bytes] | None:
    """(algorithm name, signature) or None for a blank (never signed) record."""
    what = "issuer signature record"
    if all(b == 0xFF for b in record):
        return None
    template = _template(record, TAG_SIGNATURE, what)
    fields = dict(parse_tlvs(template[len(template) - _body_len(template):], what))
    if set(fields) != {TAG_SIG_ALG, TAG_SIG_VALUE} or len(fields[TAG_SIG_ALG]) != 1:
        raise CardFormatError(f"the {what} is malformed; the card is not ours")
    alg = SIG_ALGS.get(fields[TAG_SIG_ALG][0])
    if alg is None or len(fields[TAG_SIG_VALUE]) != 64:
        raise CardFormatError(f"the {what} uses an unknown algorithm; the card is not ours")
    return alg, fields[TAG_SIG_VALUE]


def build_signature(alg: str, signature: bytes) -> bytes:
    code = {name: byte for byte, name in SIG_ALGS.items()}[alg]
    return tlv(TAG_SIGNATURE, tlv(TAG_SIG_ALG, bytes((code,))) + tlv(TAG_SIG_VALUE, signature))


def signed_bytes(uid: bytes, holder_template: bytes, auth_template: bytes = b"") -> bytes:
    """What the issuer signs: a domain label, the chip serial, the holder template and, on a
    card with its own key (card_auth), the authentication key template."""
    return (b"COCOON-FARMER-CARD-1\x00" + bytes((len(uid),)) + uid + holder_template
            + auth_template)


# -- APDUs -----------------------------------------------------------------------------------

def select_apdu() -> bytes:
    return bytes.fromhex("00A40400") + bytes((len(AID),)) + AID + b"\x00"


def read_record_apdu(sfi: int, number: int) -> bytes:
    return bytes((0x00, 0xB2, number, (sfi << 3) | 0x04, 0x00))


def update_record_apdu(sfi: int, number: int, data: bytes) -> bytes:
    return bytes((0x00, 0xDC, number, (sfi << 3) | 0x04, len(data))) + data


def append_record_apdu(sfi: int, data: bytes) -> bytes:
    return bytes((0x00, 0xE2, 0x00, sfi << 3, len(data))) + data


def read_binary_apdu(sfi: int, length: int) -> bytes:
    return bytes((0x00, 0xB0, 0x80 | sfi, 0x00, length & 0xFF))


def update_binary_apdu(sfi: int, data: bytes) -> bytes:
    return bytes((0x00, 0xD6, 0x80 | sfi, 0x00, len(data))) + data


# -- the card --------------------------------------------------------------------------------

def select(transport) -> None:
    try:
        transport.transmit(select_apdu())
    except FileNotFound:
        raise NotAFarmerCard("not a cooperative farmer card (it has no cocoon application); "
                             "ask the farmer for the card the cooperative issued") from None


def read_uid(transport) -> bytes:
    serial = transport.transmit(read_binary_apdu(SFI_SERIAL, SERIAL_LEN)).data
    if len(serial) != SERIAL_LEN:
        raise CardFormatError(f"the card serial is {len(serial)} bytes, {SERIAL_LEN} expected")
    return serial


def read_counter(transport) -> int:
    raw = transport.transmit(read_binary_apdu(SFI_COUNTER, COUNTER_LEN)).data
    if len(raw) != COUNTER_LEN:
        raise CardFormatError(f"the transaction counter is {len(raw)} bytes, "
                              f"{COUNTER_LEN} expected; the card is damaged")
    return int.from_bytes(raw, "big")


def _read_record(transport, sfi: int, number: int) -> bytes | None:
    try:
        return transport.transmit(read_record_apdu(sfi, number)).data
    except RecordNotFound:
        return None


def read_sales(transport) -> tuple[CardSale, ...]:
    sales = []
    for number in range(1, MAX_SALES_READ + 1):
        record = _read_record(transport, SFI_SALES, number)
        if record is None:
            break
        sales.append(parse_sale(record))
    return tuple(sales)


def check_signature(uid: bytes, template: bytes, signature, issuer_verifier,
                    auth_template: bytes = b"") -> str:
    """"" when the issuer signed this card's data, else the refusal reason."""
    if signature is None:
        return "the card carries no issuer signature: it was not issued by the cooperative"
    alg, sig = signature
    try:
        issuer_verifier.verify(alg, issuer_verifier.kid,
                               signed_bytes(uid, template, auth_template), sig)
    except ValueError:  # a verifier's SignatureError is a ValueError; drivers import no agent
        return ("the issuer signature does not match this card's data: the card may be forged "
                "or altered; do not buy on it and keep the card for the cooperative office")
    return ""


def read_farmer_card(transport, issuer_verifier) -> FarmerCardData:
    """Read and check the whole card. Raises NotAFarmerCard, CardFormatError, CardRemoved..."""
    select(transport)
    uid = read_uid(transport)
    record = _read_record(transport, SFI_HOLDER, 1)
    if record is None:
        raise CardFormatError("the card is blank: it was never issued to a farmer")
    holder, template = parse_holder(record)
    sig_record = _read_record(transport, SFI_SIGNATURE, 1)
    signature = None if sig_record is None else parse_signature(sig_record)
    auth = card_auth.read_auth_record(transport)
    counter = read_counter(transport)
    sales = read_sales(transport)
    refusal = check_signature(uid, template, signature, issuer_verifier,
                              auth[0] if auth else b"")
    return FarmerCardData(uid.hex().upper(), holder, counter, sales, not refusal, refusal,
                          auth[1] if auth else None)


@dataclass(frozen=True)
class AcceptedCard:
    """A farmer card whose issuer signature checks: its holder and the counter the next sale
    will carry. The station turns it into its purchase flow's `Farmer`."""

    card_uid: str
    card_kind: str  # "cpu" or "m1"
    farmer_id: str
    name: str
    account_ref: str
    card_counter: int


def accepted_card(data: FarmerCardData) -> AcceptedCard:
    """The card's holder for the next sale (counter + 1); CardRefused otherwise."""
    if not data.signature_valid:
        raise CardRefused(data.refusal or "the card's issuer signature is not valid")
    return AcceptedCard(card_uid=data.uid, card_kind="cpu", farmer_id=data.holder.farmer_id,
                        name=data.holder.name, account_ref=data.holder.account_ref,
                        card_counter=data.counter + 1)


def append_sale(transport, sale: dict, *, expected_counter: int | None = None) -> int:
    """Write one sale: the counter first (UPDATE BINARY), then the sale record (APPEND RECORD,
    carrying the new counter). A card pulled out between the two has a counter ahead of its
    last sale, never a counter used twice. Returns the new counter.

    `sale`: date (YYYY-MM-DD), voucher, grade, net_g (int), unit_price, amount (decimal
    strings or Decimal). With `expected_counter` (the `Farmer.card_counter` the sale was
    recorded with), a card whose counter moved since it was read is refused."""
    select(transport)
    counter = read_counter(transport) + 1
    if expected_counter is not None and counter != expected_counter:
        raise CounterMismatch(f"the card's counter moved (now {counter - 1}, expected "
                              f"{expected_counter - 1}): read the card again")
    if counter >= 1 << (8 * COUNTER_LEN):
        raise CardRefused("the card's transaction counter is exhausted: issue a new card")
    record = build_sale(sale, counter)
    transport.transmit(update_binary_apdu(SFI_COUNTER, counter.to_bytes(COUNTER_LEN, "big")))
    transport.transmit(append_record_apdu(SFI_SALES, record))
    return counter


def issue_cpu_card(transport, holder: dict, issuer_signer) -> FarmerCardData:
    """Personalise a blank card: holder record, issuer signature, counter 0.

    Write order: holder, signature, counter; a card pulled out half-way has no valid
    signature and is refused until issued again. A card that already holds a holder
    record is refused (re-issuing would reset its counter)."""
    record = build_holder(holder)
    select(transport)
    uid = read_uid(transport)
    existing = _read_record(transport, SFI_HOLDER, 1)
    if existing is not None and not all(b == 0xFF for b in existing):
        raise CardAlreadyIssued("this card is already issued to a farmer; it cannot be issued "
                                "again")
    auth = card_auth.generate_card_key(transport)     # None: the card has no key of its own
    signature = issuer_signer.sign(signed_bytes(uid, record, auth or b""))
    transport.transmit(update_record_apdu(SFI_HOLDER, 1, record))
    if auth is not None:
        transport.transmit(update_record_apdu(card_auth.SFI_AUTH_KEY, 1, auth))
    transport.transmit(update_record_apdu(SFI_SIGNATURE, 1,
                                          build_signature(issuer_signer.alg, signature)))
    transport.transmit(update_binary_apdu(SFI_COUNTER, bytes(COUNTER_LEN)))
    holder_parsed, _ = parse_holder(record)
    public = card_auth.parse_auth_record(auth)[1] if auth else None
    return FarmerCardData(uid.hex().upper(), holder_parsed, 0, (), True, "", public)

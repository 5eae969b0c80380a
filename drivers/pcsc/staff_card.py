"""Staff cards: how a clerk or a supervisor signs in at the station's card reader.

A staff card is a CPU card with its own application (AID `F0 43 4F 43 4F 4F 4E 53`,
"COCOONS") laid out like the farmer card (docs/card.md): the chip serial (SFI 4), a staff
record (SFI 1, template 71: staff id, name, role) and the issuer's signature over the serial
and the record (SFI 5). A station only lets a card sign in whose signature verifies against the
pinned issuer key, so a copied staff record on another chip, or an edited role, is refused.
A supervisor's card is what voiding a sale needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import farmer_card as fc
from .errors import FileNotFound

STAFF_AID = bytes.fromhex("F0434F434F4F4E53")
TAG_STAFF = 0x71
ROLES = ("clerk", "supervisor")

STAFF_FIELDS = (
    fc._Field(0xC1, "staff_id", "ascii", 20, "staff id"),
    fc._Field(0xC2, "name", "text", 48, "name"),
    fc._Field(0xC3, "role", "ascii", 12, "role"),
)


class NotAStaffCard(fc.CardFormatError):
    """The card has no staff application."""


@dataclass(frozen=True)
class StaffCardData:
    uid: str
    staff_id: str
    name: str
    role: str
    signature_valid: bool
    refusal: str = ""


def select_staff(transport) -> None:
    try:
        transport.transmit(bytes((0x00, 0xA4, 0x04, 0x00, len(STAFF_AID))) + STAFF_AID + b"\x00")
    except FileNotFound:
        raise NotAStaffCard("not a staff card") from None


def parse_staff(record: bytes) -> tuple[dict, bytes]:
    what = "staff record"
    if record and all(b == 0xFF for b in record):
        raise fc.CardFormatError("the staff card is blank: it was never issued")
    template = fc._template(record, TAG_STAFF, what)
    body = template[len(template) - fc._body_len(template):]
    values = fc._parse_fields(body, STAFF_FIELDS, what)
    if values["role"] not in ROLES:
        raise fc.CardFormatError(f"the staff card's role {values['role']!r} is not one of "
                                 f"{', '.join(ROLES)}")
    return values, template


def build_staff(staff: dict) -> bytes:
    if staff.get("role") not in ROLES:
        raise ValueError(f"staff: role must be one of {', '.join(ROLES)}")
    return fc._build(TAG_STAFF, STAFF_FIELDS, dict(staff), "staff")


def read_staff_card(transport, issuer_verifier) -> StaffCardData:
    """Read and check a staff card. Raises NotAStaffCard, CardFormatError, CardRemoved..."""
    select_staff(transport)
    uid = fc.read_uid(transport)
    record = fc._read_record(transport, fc.SFI_HOLDER, 1)
    if record is None:
        raise fc.CardFormatError("the staff card is blank: it was never issued")
    values, template = parse_staff(record)
    sig_record = fc._read_record(transport, fc.SFI_SIGNATURE, 1)
    signature = None if sig_record is None else fc.parse_signature(sig_record)
    refusal = fc.check_signature(uid, template, signature, issuer_verifier)
    return StaffCardData(uid.hex().upper(), values["staff_id"], values["name"], values["role"],
                         not refusal, refusal)


def issue_staff_card(transport, staff: dict, issuer_signer) -> StaffCardData:
    """Personalise a blank staff card: the staff record, then the issuer signature."""
    record = build_staff(staff)
    select_staff(transport)
    uid = fc.read_uid(transport)
    existing = fc._read_record(transport, fc.SFI_HOLDER, 1)
    if existing is not None and not all(b == 0xFF for b in existing):
        raise fc.CardAlreadyIssued("this staff card is already issued")
    signature = issuer_signer.sign(fc.signed_bytes(uid, record))
    transport.transmit(fc.update_record_apdu(fc.SFI_HOLDER, 1, record))
    transport.transmit(fc.update_record_apdu(fc.SFI_SIGNATURE, 1,
                                             fc.build_signature(issuer_signer.alg, signature)))
    values, _ = parse_staff(record)
    return StaffCardData(uid.hex().upper(), values["staff_id"], values["name"], values["role"],
                         True, "")

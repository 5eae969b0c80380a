"""The farmer-card application on a CPU card (drivers/pcsc/farmer_card.py), through the real
pcscd with a virtual CPU card (tests/support/cpu_card.py); the parsing rules also as pure tests."""

from __future__ import annotations

import pytest

from agent.contract.signing import Ed25519Signer, Verifier
from drivers.pcsc import ApduTransport, CardRemoved, SecurityStatusNotSatisfied
from drivers.pcsc import farmer_card as fc
from tests.support.cpu_card import CpuFarmerCard
from tests.support.station_cards import HOLDER_ZH as HOLDER
from tests.support.station_cards import card_sale as sale


@pytest.fixture(scope="module")
def issuer():
    signer = Ed25519Signer.generate()
    return signer, Verifier.from_pem(signer.public_key_pem())


@pytest.fixture
def card(virtual_card):
    return virtual_card("00 00", cls=CpuFarmerCard, sales_capacity=3).insert()


@pytest.fixture
def transport(card):
    with ApduTransport.open("00 00", removal_grace_s=2.0) as t:
        yield t


# -- through pcscd ---------------------------------------------------------------------------

def test_issue_then_read_back(transport, card, issuer):
    signer, verifier = issuer
    with pytest.raises(SecurityStatusNotSatisfied):             # 6982 before SELECT
        transport.transmit(fc.read_binary_apdu(fc.SFI_COUNTER, 4))
    issued = fc.issue_cpu_card(transport, HOLDER, signer)
    data = fc.read_farmer_card(transport, verifier)
    assert data == issued
    assert data.signature_valid and data.refusal == ""
    assert data.uid == "8600112233445566"
    assert data.holder == fc.CardHolder(**HOLDER)
    assert (data.counter, data.sales) == (0, ())
    assert any(c[1] == 0xC0 for c in card.commands)             # 255-byte record: 61XX chain
    farmer = fc.accepted_card(data)
    assert (farmer.card_uid, farmer.card_kind, farmer.farmer_id, farmer.name) == (
        "8600112233445566", "cpu", HOLDER["farmer_id"], HOLDER["name"])
    assert (farmer.account_ref, farmer.card_counter) == (HOLDER["account_ref"], 1)
    with pytest.raises(fc.CardAlreadyIssued):
        fc.issue_cpu_card(transport, HOLDER, signer)
    # 6CXX: a wrong Le is sent again with the length the card asks for
    assert transport.transmit(fc.read_binary_apdu(fc.SFI_COUNTER, 2)).data == bytes(4)


def test_forged_cards_are_read_but_refused(transport, card, issuer):
    signer, verifier = issuer
    fc.issue_cpu_card(transport, HOLDER, signer)
    holder = card.files[1]
    genuine = holder.records[0]
    holder.records[0] = genuine.replace("王秀英".encode(), "王秀华".encode())  # same length
    data = fc.read_farmer_card(transport, verifier)
    assert data.holder.name == "王秀华"
    assert not data.signature_valid and "forged" in data.refusal
    with pytest.raises(fc.CardRefused, match="forged"):
        fc.accepted_card(data)

    holder.records[0] = genuine                                 # genuine data, cloned chip
    card.files[4].data[:] = bytes.fromhex("8600112233445567")
    assert not fc.read_farmer_card(transport, verifier).signature_valid

    card.files[4].data[:] = bytes.fromhex("8600112233445566")   # another issuer's key
    other = Verifier.from_pem(Ed25519Signer.generate().public_key_pem())
    assert not fc.read_farmer_card(transport, other).signature_valid
    assert fc.read_farmer_card(transport, verifier).signature_valid

    card.files[5].records[0] = b"\xff" * 80                     # never signed
    data = fc.read_farmer_card(transport, verifier)
    assert not data.signature_valid and "no issuer signature" in data.refusal


def test_bad_holder_records_on_the_card(transport, card, issuer):
    signer, verifier = issuer
    with pytest.raises(fc.CardFormatError, match="blank"):
        fc.read_farmer_card(transport, verifier)
    fc.issue_cpu_card(transport, HOLDER, signer)
    good = fc.build_holder(HOLDER)
    for record, words in [
        (good[:40], "cut short"),                                # truncated
        (holder_with(xD9=b"\x00"), "unknown field D9"),
        (b"\x70\x81\x05\xc1\x03abc", "badly encoded length"),
        (b"\x70" + b"\x81\xff" + b"\xc2\x81\xfc" + b"x" * 252, "at most"),   # oversized
    ]:
        card.files[1].records[0] = record
        with pytest.raises(fc.CardFormatError, match=words):
            fc.read_farmer_card(transport, verifier)


def test_an_unknown_card_is_not_a_farmer_card(virtual_card, issuer):
    virtual_card("00 00", cls=CpuFarmerCard, aid=bytes.fromhex("A0000003330101")).insert()
    with ApduTransport.open("00 00") as t, \
            pytest.raises(fc.NotAFarmerCard, match="not a cooperative farmer card"):
        fc.read_farmer_card(t, issuer[1])


def test_counter_increments_and_the_sales_file_wraps(transport, card, issuer):
    signer, verifier = issuer
    fc.issue_cpu_card(transport, HOLDER, signer)
    for n in range(1, 6):
        farmer = fc.accepted_card(fc.read_farmer_card(transport, verifier))
        assert farmer.card_counter == n
        assert fc.append_sale(transport, sale(n), expected_counter=farmer.card_counter) == n
    data = fc.read_farmer_card(transport, verifier)
    assert data.counter == 5
    assert [s.counter for s in data.sales] == [5, 4, 3]          # capacity 3, newest first
    assert data.sales[0] == fc.CardSale(counter=5, **sale(5))
    with pytest.raises(fc.CounterMismatch):
        fc.append_sale(transport, sale(6), expected_counter=5)


def test_card_pulled_out_mid_read_and_mid_write(card, issuer):
    signer, verifier = issuer
    with ApduTransport.open("00 00", removal_grace_s=2.0) as t:
        fc.issue_cpu_card(t, HOLDER, signer)
        fc.append_sale(t, sale(1))
        card.pull_on(lambda apdu: apdu[1] == 0xB2 and apdu[3] >> 3 == fc.SFI_SALES)
        with pytest.raises(CardRemoved):
            fc.read_farmer_card(t, verifier)
    card.insert()
    with ApduTransport.open("00 00", removal_grace_s=2.0) as t:
        card.pull_on(lambda apdu: apdu[1] == 0xE2)               # after the counter's UPDATE
        with pytest.raises(CardRemoved):
            fc.append_sale(t, sale(2))
    card.insert()
    with ApduTransport.open("00 00", removal_grace_s=2.0) as t:
        data = fc.read_farmer_card(t, verifier)
    assert data.counter == 2                                     # counter 2 is spent...
    assert [s.counter for s in data.sales] == [1]                # ...without a sale: a gap
    assert fc.accepted_card(data).card_counter == 3                  # never counter 2 again


# -- pure parsing ----------------------------------------------------------------------------

def test_holder_round_trip_and_padding():
    record = fc.build_holder(HOLDER)
    assert len(record) <= fc.MAX_RECORD
    holder, template = fc.parse_holder(record + b"\xff" * 20 + b"\x00" * 3)
    assert holder == fc.CardHolder(**HOLDER) and template == record


def field(tag: int, value: bytes) -> bytes:
    return fc.tlv(tag, value)


def holder_with(**changes) -> bytes:
    fields = {f.tag: fc._encode(f, HOLDER[f.key], "t")[2:] for f in fc.HOLDER_FIELDS}
    fields.update({int(k[1:], 16): v for k, v in changes.items()})
    return fc.tlv(0x70, b"".join(field(t, v) for t, v in fields.items() if v is not None))


@pytest.mark.parametrize(("record", "words"), [
    (b"", "empty"),
    (b"\xff" * 255, "blank"),
    (b"\x71\x00", "does not start"),
    (holder_with()[:-5], "cut short"),
    (b"\x70\x10" + holder_with()[2:18], "cut short"),
    (b"\x70\x81", "length is missing"),
    (b"\x70\x83\x00\x00\x01", "invalid length"),
    (holder_with() + b"\x01", "unexpected bytes"),
    (holder_with() + b"\xff" * 300, "at most 255"),
    (holder_with(xC2=b"x" * 49), "at most 48"),
    (holder_with(xC7=None), "bank account reference"),
    (holder_with(xC8=b"?"), "unknown field C8"),
    (holder_with(xC4=b"\x00\x03"), "not a valid number"),
    (holder_with(xC5=b"4,5"), "not a decimal"),
    (holder_with(xC2=b"\xe7\x8e"), "not readable text"),
    (holder_with(xC1=b""), "empty"),
    (fc.tlv(0x70, holder_with()[2:] + field(0xC1, b"dup")), "twice"),
    (fc.tlv(0x70, b"\x1f\x01\x00"), "multi-byte tag"),
])
def test_bad_holder_records_are_refused_in_plain_words(record, words):
    with pytest.raises(fc.CardFormatError, match=words):
        fc.parse_holder(record)


def test_bad_input_is_refused_before_writing():
    with pytest.raises(ValueError, match="labour"):
        fc.build_holder({**HOLDER, "labour": "3"})
    with pytest.raises(ValueError, match="mulberry_area_mu"):
        fc.build_holder({**HOLDER, "mulberry_area_mu": 4.5})
    with pytest.raises(ValueError, match="missing"):
        fc.build_holder({k: v for k, v in HOLDER.items() if k != "name"})
    with pytest.raises(ValueError, match="address"):
        fc.build_holder({**HOLDER, "address": "村" * 40})
    with pytest.raises(ValueError, match="date"):
        fc.build_sale({**sale(1), "date": "20 May"}, 1)


def test_signature_record_and_signed_bytes():
    sig = bytes(range(64))
    assert fc.parse_signature(fc.build_signature("Ed25519", sig)) == ("Ed25519", sig)
    assert fc.parse_signature(b"\xff" * 80) is None
    with pytest.raises(fc.CardFormatError, match="unknown algorithm"):
        fc.parse_signature(fc.tlv(0x73, field(0x80, b"\x09") + field(0x9E, sig)))
    with pytest.raises(fc.CardFormatError, match="malformed"):
        fc.parse_signature(fc.tlv(0x73, field(0x9E, sig)))
    uid = bytes.fromhex("8600112233445566")
    assert fc.signed_bytes(uid, b"\x70\x00") == (
        b"COCOON-FARMER-CARD-1\x00\x08" + uid + b"\x70\x00")

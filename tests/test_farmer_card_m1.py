"""The farmer-card application on a MIFARE Classic 1K (drivers/pcsc/m1_card.py, m1_keys.py),
through the real pcscd with a virtual ACR122U-style reader and card (tests/support/m1_card.py);
key diversification and access bits also against values worked out independently."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from agent.contract.signing import Ed25519Signer, Verifier
from drivers.pcsc import ApduTransport, CardRemoved
from drivers.pcsc import farmer_card as fc
from drivers.pcsc import m1_card as m1
from drivers.pcsc import m1_keys as keys
from tests.support.cpu_card import CpuFarmerCard
from tests.support.m1_card import ATR_MIFARE_1K, M1Card
from tests.support.station_cards import HOLDER_ZH as HOLDER
from tests.support.station_cards import card_sale as sale

MASTER = bytes.fromhex("8F1C22A45B0E7D3396C4E1F0A7B25D6C")
OTHER_MASTER = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
UID = bytes.fromhex("A1B2C3D4")

@pytest.fixture(scope="module")
def issuer():
    signer = Ed25519Signer.generate()
    return signer, Verifier.from_pem(signer.public_key_pem())


@pytest.fixture
def card(virtual_card):
    return virtual_card("00 00", cls=M1Card, uid=UID).insert()


def open_transport():
    return ApduTransport.open("00 00", removal_grace_s=2.0)


@pytest.fixture
def transport(card):
    with open_transport() as t:
        yield t


def is_write(block: int):
    return lambda apdu: apdu[1] == 0xD6 and apdu[3] == block


# -- through pcscd ---------------------------------------------------------------------------

def test_issue_then_read_back(transport, card, issuer):
    signer, verifier = issuer
    assert m1.is_m1_atr(transport.atr)
    issued = m1.issue_m1_card(transport, HOLDER, signer, MASTER)
    data = m1.read_m1_card(transport, verifier, MASTER)
    assert data == issued
    assert data.signature_valid and data.refusal == ""
    assert data.uid == "A1B2C3D4"
    assert data.holder == fc.CardHolder(**HOLDER)
    assert (data.counter, data.sales) == (0, ())
    farmer = m1.accepted_card(data)
    assert (farmer.card_uid, farmer.card_kind, farmer.card_counter) == ("A1B2C3D4", "m1", 1)
    assert (farmer.farmer_id, farmer.account_ref) == (HOLDER["farmer_id"], HOLDER["account_ref"])

    # every used sector now has this card's keys and "A reads, B writes"; sector 0 untouched
    assert card.trailer_writes[-1] == 4 * m1.COUNTER_SECTOR + 3       # the counter's last
    assert sorted(card.trailer_writes) == [4 * s + 3 for s in range(1, 16)]
    for sector in range(1, 16):
        trailer = bytes(card.blocks[4 * sector + 3])
        assert trailer[:6] == keys.sector_key(MASTER, UID, sector, keys.KEY_A)
        assert trailer[6:10] == bytes.fromhex("78778869")
        assert trailer[10:] == keys.sector_key(MASTER, UID, sector, keys.KEY_B)
    assert bytes(card.blocks[3]) == bytes.fromhex("FFFFFFFFFFFFFF078069FFFFFFFFFFFF")

    with pytest.raises(fc.CardAlreadyIssued):
        m1.issue_m1_card(transport, HOLDER, signer, MASTER)
    # key A opens for reading only: a write with it is refused by the card
    session = m1.M1Session(transport)
    session.open(m1.COUNTER_SECTOR, keys.KEY_A, keys.sector_key(MASTER, UID, 8, keys.KEY_A))
    assert m1.decode_value_block(session.read(m1.COUNTER_BLOCK), m1.COUNTER_BLOCK) == 0
    with pytest.raises(m1.M1AccessDenied):
        session.write(m1.COUNTER_BLOCK, m1.encode_value_block(9, m1.COUNTER_BLOCK))
    with pytest.raises(m1.M1AccessDenied):                  # 6982: that sector is not open
        session.read(4 * 9)


def test_sales_counter_and_cyclic_slots_without_trailer_writes(transport, card, issuer):
    signer, verifier = issuer
    m1.issue_m1_card(transport, HOLDER, signer, MASTER)
    trailer_writes, issued_at = list(card.trailer_writes), len(card.commands)
    for n in range(1, 6):
        farmer = m1.accepted_card(m1.read_m1_card(transport, verifier, MASTER))
        assert farmer.card_counter == n
        assert m1.append_m1_sale(transport, sale(n), master_key=MASTER,
                                 expected_counter=farmer.card_counter) == n
    data = m1.read_m1_card(transport, verifier, MASTER)
    assert data.counter == 5 and data.signature_valid
    assert [s.counter for s in data.sales] == [5, 4, 3]            # 3 slots, newest first
    assert data.sales[0] == fc.CardSale(counter=5, **sale(5))
    assert data.sales[2] == fc.CardSale(counter=3, **sale(3))
    with pytest.raises(fc.CounterMismatch, match="moved"):
        m1.append_m1_sale(transport, sale(6), master_key=MASTER, expected_counter=5)
    assert card.trailer_writes == trailer_writes                   # reading and selling: none
    updates = [c[3] for c in card.commands[issued_at:] if c[1] == 0xD6]
    assert len(updates) == 5 * 10 and not [b for b in updates if b % 4 == 3]   # not even tried


def test_forged_holder_data_is_read_but_refused(transport, card, issuer):
    signer, verifier = issuer
    m1.issue_m1_card(transport, HOLDER, signer, MASTER)
    area = b"".join(bytes(card.blocks[b]) for b in m1.HOLDER_BLOCKS)
    forged = area.replace("王秀英".encode(), "王秀华".encode())          # same length
    assert forged != area
    for i, block in enumerate(m1.HOLDER_BLOCKS):
        card.blocks[block][:] = forged[16 * i:16 * (i + 1)]
    data = m1.read_m1_card(transport, verifier, MASTER)
    assert data.holder.name == "王秀华"
    assert not data.signature_valid and "forged or altered" in data.refusal
    with pytest.raises(fc.CardRefused, match="forged"):
        m1.accepted_card(data)
    other = Verifier.from_pem(Ed25519Signer.generate().public_key_pem())
    for i, block in enumerate(m1.HOLDER_BLOCKS):
        card.blocks[block][:] = area[16 * i:16 * (i + 1)]
    assert not m1.read_m1_card(transport, other, MASTER).signature_valid
    assert m1.read_m1_card(transport, verifier, MASTER).signature_valid


def test_cards_with_other_keys_are_refused(virtual_card, card, issuer):
    signer, verifier = issuer
    with open_transport() as t:
        m1.issue_m1_card(t, HOLDER, signer, MASTER)
        with pytest.raises(m1.ForeignKeys, match="does not open with the cooperative's keys"):
            m1.read_m1_card(t, verifier, OTHER_MASTER)             # another system's card
        with pytest.raises(m1.ForeignKeys):
            m1.append_m1_sale(t, sale(1), master_key=OTHER_MASTER)
        with pytest.raises(m1.ForeignKeys, match="neither blank"):
            m1.issue_m1_card(t, HOLDER, signer, OTHER_MASTER)
    card.remove()
    clone = virtual_card("00 00", cls=M1Card, uid=bytes.fromhex("0A0B0C0D"))
    clone.copy_from(card)                   # the whole dump, keys included, on another UID
    clone.insert()
    with open_transport() as t, pytest.raises(m1.ForeignKeys, match="copy of another card"):
        m1.read_m1_card(t, verifier, MASTER)


def test_a_blank_card_and_a_card_that_is_not_m1(transport, card, issuer, virtual_card):
    with pytest.raises(m1.BlankM1Card, match="blank: it was never issued"):
        m1.read_m1_card(transport, issuer[1], MASTER)
    with pytest.raises(m1.BlankM1Card, match="blank"):
        m1.append_m1_sale(transport, sale(1), master_key=MASTER)
    assert card.trailer_writes == []
    transport.close()
    card.remove()
    virtual_card("00 00", cls=CpuFarmerCard).insert()
    with open_transport() as t, pytest.raises(m1.NotAnM1Card, match="not a MIFARE Classic"):
        m1.read_m1_card(t, issuer[1], MASTER)


def test_bad_holder_areas_on_the_card(transport, card, issuer):
    signer, verifier = issuer
    m1.issue_m1_card(transport, HOLDER, signer, MASTER)
    good = fc.build_holder(HOLDER)

    def put(area: bytes) -> None:
        area = area + bytes(m1.HOLDER_AREA - len(area))
        for i, block in enumerate(m1.HOLDER_BLOCKS):
            card.blocks[block][:] = area[16 * i:16 * (i + 1)]

    for area, words in [
        (b"", "no holder record"),                                   # never written
        (good[:2] + good[2:60], "cut short"),                        # truncated
        (b"\x70\x82\x01\x60" + good[2:], "cut short"),               # longer than the area
        (b"\x70\x82\x01\x20" + b"\xc2\x82\x01\x1c" + b"x" * 284, "at most 255"),  # oversized
        (fc.tlv(0x70, good[2:] + fc.tlv(0xD9, b"\x00")), "unknown field D9"),
        (b"\x71\x00", "does not start with tag 70"),
        (good + b"\x73\x03\x80\x01\x01", "malformed"),               # signature malformed
    ]:
        put(area)
        with pytest.raises(fc.CardFormatError, match=words):
            m1.read_m1_card(transport, verifier, MASTER)
    put(good)                                                        # signature erased
    data = m1.read_m1_card(transport, verifier, MASTER)
    assert not data.signature_valid and "no issuer signature" in data.refusal


def test_pulled_out_mid_read_and_mid_write_never_reuses_a_counter(card, issuer):
    signer, verifier = issuer
    with open_transport() as t:
        m1.issue_m1_card(t, HOLDER, signer, MASTER)
        m1.append_m1_sale(t, sale(1), master_key=MASTER)
        card.pull_on(lambda apdu: apdu[1] == 0xB0 and apdu[3] in m1.SALES_BLOCKS)
        with pytest.raises(CardRemoved):
            m1.read_m1_card(t, verifier, MASTER)
    card.insert()
    with open_transport() as t:                  # out while the sale's blocks are written
        card.pull_on(is_write(m1.slot_blocks(2)[3]))
        with pytest.raises(CardRemoved):
            m1.append_m1_sale(t, sale(2), master_key=MASTER)
    card.insert()
    with open_transport() as t:
        data = m1.read_m1_card(t, verifier, MASTER)
        assert data.counter == 2                               # counter 2 is spent...
        assert [s.counter for s in data.sales] == [1]          # ...without a sale: a gap
        assert m1.accepted_card(data).card_counter == 3
        # torn while the counter's first copy was written: that counter is spent too
        card.pull_on(is_write(m1.COUNTER_BLOCK), tear=True)
        with pytest.raises(CardRemoved):
            m1.append_m1_sale(t, sale(3), master_key=MASTER, expected_counter=3)
    card.insert()
    with open_transport() as t:
        data = m1.read_m1_card(t, verifier, MASTER)
        assert data.counter == 3 and [s.counter for s in data.sales] == [1]
        assert m1.append_m1_sale(t, sale(4), master_key=MASTER, expected_counter=4) == 4
        # the slot cut short at sale 2 is overwritten by sale 5 (slot of 2 = slot of 5)
        assert m1.append_m1_sale(t, sale(5), master_key=MASTER, expected_counter=5) == 5
        data = m1.read_m1_card(t, verifier, MASTER)
    assert [s.counter for s in data.sales] == [5, 4]
    assert data.sales[0] == fc.CardSale(counter=5, **sale(5))
    assert len(card.trailer_writes) == 15                       # issuing's, none since


def test_pulled_out_during_issuing_then_issued_again(card, issuer):
    signer, verifier = issuer
    with open_transport() as t:
        card.pull_on(lambda apdu: apdu[1] == 0xD6 and apdu[3] == 4 * 12 + 3)   # a trailer
        with pytest.raises(CardRemoved):
            m1.issue_m1_card(t, HOLDER, signer, MASTER)
    assert 0 < len(card.trailer_writes) < 15
    card.insert()
    with open_transport() as t:
        with pytest.raises(m1.ForeignKeys, match="incompletely"):
            m1.read_m1_card(t, verifier, MASTER)
        m1.issue_m1_card(t, HOLDER, signer, MASTER)
        data = m1.read_m1_card(t, verifier, MASTER)
    assert data.signature_valid and data.counter == 0
    assert sorted(card.trailer_writes) == [4 * s + 3 for s in range(1, 16)]   # each once


def test_a_card_with_one_foreign_sector_is_not_issued_and_not_written(transport, card, issuer):
    card.blocks[4 * 12 + 3][:] = bytes.fromhex("A0A1A2A3A4A5FF078069B0B1B2B3B4B5")
    before = [bytes(b) for b in card.blocks]
    with pytest.raises(m1.ForeignKeys, match="sector 12 opens with neither"):
        m1.issue_m1_card(transport, HOLDER, issuer[0], MASTER)
    assert [bytes(b) for b in card.blocks] == before and card.trailer_writes == []


def test_a_chip_that_halts_after_a_failed_authentication_is_reset_between_keys(virtual_card,
                                                                               issuer):
    """Where the reader's chip stops after one wrong key, the card is reset (SCardReconnect)
    before the next key is tried, so the reasons stay precise and nothing is written."""
    signer, verifier = issuer
    card = virtual_card("00 00", cls=M1Card, uid=UID, halt_on_failed_auth=True).insert()
    with open_transport() as t:
        m1.issue_m1_card(t, HOLDER, signer, MASTER)             # a blank card: no wrong key
        assert m1.read_m1_card(t, verifier, MASTER).signature_valid
        blocks = [bytes(b) for b in card.blocks]
        with pytest.raises(fc.CardAlreadyIssued):
            m1.issue_m1_card(t, HOLDER, signer, MASTER)
        with pytest.raises(m1.ForeignKeys):
            m1.read_m1_card(t, verifier, OTHER_MASTER)
        assert not card.halted and [bytes(b) for b in card.blocks] == blocks
        assert m1.append_m1_sale(t, sale(1), master_key=MASTER) == 1   # same connection


def test_seven_byte_uid(virtual_card, issuer):
    signer, verifier = issuer
    card = virtual_card("00 01", cls=M1Card, uid=bytes.fromhex("04112233445566")).insert()
    with ApduTransport.open("00 01") as t:
        m1.issue_m1_card(t, HOLDER, signer, MASTER)
        m1.append_m1_sale(t, sale(1), master_key=MASTER)
        data = m1.read_m1_card(t, verifier, MASTER)
    assert data.uid == "04112233445566" and data.signature_valid and data.counter == 1
    assert bytes(card.blocks[7][:6]) == keys.sector_key(MASTER, card.uid, 1, keys.KEY_A)


# -- pure ------------------------------------------------------------------------------------

def test_m1_atr():
    assert m1.is_m1_atr(ATR_MIFARE_1K)
    acr122u = "3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A"
    assert m1.is_m1_atr(bytes.fromhex(acr122u))
    check = 0
    for byte in bytes.fromhex(acr122u)[1:]:
        check ^= byte
    assert check == 0                                           # TCK: T0 to TCK XOR to 00
    for other in ["3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 02 00 00 00 00 69",   # 4K
                  "3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 03 00 00 00 00 68",   # Ultralight
                  "3B 8A 01 63 6F 63 6F 6F 6E 2D 63 70 75 00",                    # a CPU card
                  "3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00",                     # cut short
                  "", "3B", "12 34"]:
        assert not m1.is_m1_atr(bytes.fromhex(other)), other


def _aes(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def _double(block: bytes) -> bytes:
    value = int.from_bytes(block, "big") << 1
    if value >> 128:
        value = (value & ((1 << 128) - 1)) ^ 0x87
    return value.to_bytes(16, "big")


def an10922_by_hand(master: bytes, m: bytes) -> bytes:
    """AN10922 AES-128 step by step: subkeys K1 = dbl(AES(K, 0)), K2 = dbl(K1); D = 01 || M
    padded with 80 00.. to 32 bytes (XOR K2 into the last block), or 32 bytes as is (XOR K1);
    the diversified key is the last block of AES-CBC with a zero IV."""
    k1 = _double(_aes(master, bytes(16)))
    k2 = _double(k1)
    d = b"\x01" + m
    padded = len(d) < 32
    if padded:
        d = d + b"\x80" + bytes(31 - len(d))
    last = bytes(a ^ b for a, b in zip(d[16:], k2 if padded else k1, strict=True))
    state = bytes(16)
    for block in (d[:16], last):
        state = _aes(master, bytes(a ^ b for a, b in zip(state, block, strict=True)))
    return state


def test_an10922_published_vector_and_by_hand():
    master = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    m = bytes.fromhex("04782E21801D80" "3042F5" "4E585020416275")      # UID, AID, "NXP Abu"
    expected = bytes.fromhex("A8DD63A3B89D54B37CA802473FDA9175")       # AN10922 2.2.1
    assert keys.an10922_aes128(master, m) == expected == an10922_by_hand(master, m)
    for uid in (UID, bytes.fromhex("04112233445566")):
        for sector in (1, 8, 15):
            for key_type in (keys.KEY_A, keys.KEY_B):
                m = keys.diversification_input(uid, sector, key_type)
                assert 16 <= len(m) <= 31
                assert keys.sector_key(MASTER, uid, sector, key_type) == \
                    an10922_by_hand(MASTER, m)[:6]
    m = bytes(range(31))                            # 32 bytes with the constant: no padding, K1
    assert keys.an10922_aes128(MASTER, m) == an10922_by_hand(MASTER, m)
    for m in (bytes(15), bytes(32)):
        with pytest.raises(ValueError):
            keys.an10922_aes128(master, m)


VECTOR_A1 = "8E4CFB4B8A19190A5C6663BF187DFBE0"


def test_diversified_keys_fixed_vector_and_distinct():
    # M = A1B2C3D4 'A' 01 "COCOON-FARMER-M1", computed with an10922_by_hand above
    m = bytes.fromhex("A1B2C3D4" "41" "01") + b"COCOON-FARMER-M1"
    assert keys.diversification_input(UID, 1, keys.KEY_A) == m
    assert an10922_by_hand(MASTER, m).hex().upper() == VECTOR_A1
    assert keys.sector_key(MASTER, UID, 1, keys.KEY_A).hex().upper() == VECTOR_A1[:12]
    derived = {keys.sector_key(MASTER, UID, s, t) for s in range(1, 16)
               for t in (keys.KEY_A, keys.KEY_B)}
    assert len(derived) == 30 and keys.TRANSPORT_KEY not in derived
    assert keys.sector_key(MASTER, bytes.fromhex("A1B2C3D5"), 1, keys.KEY_A) != \
        keys.sector_key(MASTER, UID, 1, keys.KEY_A)


@pytest.mark.parametrize(("conditions", "datasheet_bytes"), [
    ((0b000, 0b000, 0b000, 0b001), "FF 07 80"),     # transport configuration
    ((0b100, 0b100, 0b100, 0b011), "78 77 88"),     # ours: A|B read, B write; B writes trailer
    ((0b000, 0b000, 0b000, 0b011), "7F 07 88"),
    ((0b110, 0b110, 0b110, 0b011), "08 77 8F"),     # value blocks
])
def test_access_bits_against_the_datasheet(conditions, datasheet_bytes):
    raw = bytes.fromhex(datasheet_bytes)
    assert keys.access_bytes(conditions) == raw
    assert keys.parse_access_bytes(raw) == conditions


def test_access_bits_are_checked_before_a_trailer_is_built():
    assert bytes.fromhex("787788") == keys.ISSUED_ACCESS
    assert bytes.fromhex("FF0780") == keys.TRANSPORT_ACCESS
    with pytest.raises(keys.AccessBitsError, match="inverted"):
        keys.parse_access_bytes(bytes.fromhex("FF0781"))
    with pytest.raises(keys.AccessBitsError):
        keys.trailer(bytes(6), bytes.fromhex("787789"), bytes(6))
    built = keys.CardKeys(MASTER, UID).trailer(3)
    assert built[6:10] == bytes.fromhex("78778869") and len(built) == 16


def test_value_block_counter_and_its_copy():
    block = m1.encode_value_block(5, m1.COUNTER_BLOCK)
    assert block == bytes.fromhex("05000000 FAFFFFFF 05000000 20DF20DF".replace(" ", ""))
    assert m1.decode_value_block(block, m1.COUNTER_BLOCK) == 5
    assert m1.decode_value_block(block, m1.COUNTER_COPY_BLOCK) is None   # another address
    torn = block[:8] + bytes(8)
    assert m1.decode_value_block(torn, m1.COUNTER_BLOCK) is None
    copy = m1.encode_value_block(5, m1.COUNTER_COPY_BLOCK)
    ahead = m1.encode_value_block(6, m1.COUNTER_BLOCK)
    assert m1.counter_of(block, copy) == 5
    assert m1.counter_of(ahead, copy) == 6                    # copy not yet written
    assert m1.counter_of(torn, copy) == 6                     # torn first copy: spent
    assert m1.counter_of(block, bytes(16)) == 5
    with pytest.raises(fc.CardFormatError, match="damaged"):
        m1.counter_of(torn, bytes(16))
    with pytest.raises(fc.CardFormatError, match="disagree"):
        m1.counter_of(m1.encode_value_block(9, m1.COUNTER_BLOCK), copy)


def test_slots_and_what_a_slot_may_hold():
    assert m1.SALE_SLOTS == 3 and len(set(m1.SALES_BLOCKS)) == 21
    assert m1.slot_blocks(1) == m1.slot_blocks(4) != m1.slot_blocks(2)
    record = fc.build_sale(sale(4), 4)
    slot = record + bytes(112 - len(record))
    assert m1.sale_in_slot(slot, 4) == fc.CardSale(counter=4, **sale(4))
    assert m1.sale_in_slot(slot, 7) is None                   # an older sale: a gap
    assert m1.sale_in_slot(bytes(16) + slot[16:], 4) is None  # first block zeroed: cut short
    with pytest.raises(fc.CardFormatError, match="altered"):
        m1.sale_in_slot(slot, 1)                              # a newer sale than the counter
    biggest = {"date": "2026-05-20", "voucher": "v" * 40, "grade": "g" * 12,
               "net_g": 0xFFFFFFFF, "unit_price": "9" * 12, "amount": "9" * 14}
    assert len(fc.build_sale(biggest, 0x7FFFFFFF)) <= m1.SLOT_BLOCKS * m1.BLOCK


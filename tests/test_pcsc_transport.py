"""ApduTransport through the real pcscd and vpcd, with virtual cards (tests/support/pcsc.py)."""

from __future__ import annotations

import time

import pytest

from drivers.pcsc import (
    AmbiguousReader,
    ApduTransport,
    AuthenticationBlocked,
    CardRemoved,
    CardStatusError,
    FileNotFound,
    NoCard,
    ReaderNotFound,
    ReaderServiceUnavailable,
    RecordNotFound,
    SecurityStatusNotSatisfied,
    VerificationFailed,
    list_readers,
)
from tests.support.vcard import SW_OK, VirtualCard, make_atr

AID = bytes.fromhex("A0000003330101")
SELECT = bytes.fromhex("00A40400") + bytes((len(AID),)) + AID
LONG = bytes(range(256)) * 2 + bytes(range(88))        # 600 bytes: three GET RESPONSE rounds


class ApplicationCard(VirtualCard):
    """Answers SELECT by AID, a long GET DATA in 61XX chunks, a READ BINARY that insists on
    Le 10, any status word asked for by `00 EE sw1 sw2`, and is pulled out by `00 DD`."""

    atr = make_atr(b"cocoon-app")

    def __init__(self, reader, **kwargs):
        super().__init__(reader, **kwargs)
        self.pending = b""

    def respond(self, apdu: bytes) -> bytes:
        ins, p1, p2 = apdu[1], apdu[2], apdu[3]
        if ins == 0xA4:
            return b"\x6f\x00" + SW_OK if apdu[5:5 + apdu[4]] == AID else b"\x6a\x82"
        if ins == 0xCA:
            self.pending = LONG
            return b"\x61\x00"
        if ins == 0xC0:
            size = apdu[4] or 256
            chunk, self.pending = self.pending[:size], self.pending[size:]
            left = len(self.pending)
            return chunk + (bytes((0x61, min(left, 256) & 0xFF)) if left else SW_OK)
        if ins == 0xB0:
            le = apdu[4] if len(apdu) == 5 else None
            return bytes(range(0x10)) + SW_OK if le == 0x10 else b"\x6c\x10"
        if ins == 0xEE:
            return bytes((p1, p2))
        if ins == 0xDD:
            self.remove()
            return SW_OK
        return b"\x6d\x00"


@pytest.fixture
def card(virtual_card):
    return virtual_card("00 00", cls=ApplicationCard).insert()


@pytest.fixture
def transport(card):
    with ApduTransport.open("00 00", removal_grace_s=2.0) as t:
        yield t


def test_atr_and_select_answered_9000(transport, card):
    assert transport.atr == card.atr
    assert transport.reader == card.reader.name
    response = transport.transmit(SELECT)
    assert (response.sw, response.data) == (0x9000, b"\x6f\x00")
    assert card.commands == [SELECT]


def test_61xx_is_followed_by_get_response_until_done(transport, card):
    response = transport.transmit(bytes.fromhex("00CA010000"))
    assert response.ok and response.data == LONG
    assert [c[1] for c in card.commands] == [0xCA, 0xC0, 0xC0, 0xC0]
    assert card.commands[1] == bytes.fromhex("00C0000000")      # 6100: 256 bytes


def test_6cxx_is_sent_again_with_the_le_asked_for(transport, card):
    response = transport.transmit(bytes.fromhex("00B0000000"))
    assert response.data == bytes(range(0x10))
    assert card.commands == [bytes.fromhex("00B0000000"), bytes.fromhex("00B0000010")]


STATUS_ERRORS = {
    0x6982: SecurityStatusNotSatisfied,
    0x6983: AuthenticationBlocked,
    0x63C2: VerificationFailed,
    0x6A82: FileNotFound,
    0x6A83: RecordNotFound,
    0x6A86: CardStatusError,
}


def test_status_words_raise_typed_errors(transport):
    # One card for the whole table: each insertion costs a pcscd poll (0.4 s).
    for sw, error in STATUS_ERRORS.items():
        command = bytes((0x00, 0xEE, sw >> 8, sw & 0xFF))
        with pytest.raises(error) as raised:
            transport.transmit(command)
        assert type(raised.value) is error and raised.value.sw == sw, f"{sw:04X}"
        assert transport.transmit(command, check=False).sw == sw     # or the response as is
    with pytest.raises(VerificationFailed) as wrong_pin:
        transport.transmit(bytes.fromhex("00EE63C2"))
    assert wrong_pin.value.tries_left == 2


def test_a_card_pulled_out_mid_transaction_raises_card_removed(transport, card):
    transport.transmit(SELECT)
    with pytest.raises(CardRemoved, match="removed"):
        transport.transmit(bytes.fromhex("00DD0000"))
    assert not card.inserted


def test_a_card_pulled_out_between_commands_raises_card_removed(transport, card):
    card.remove()
    with pytest.raises(CardRemoved):
        transport.transmit(SELECT)


def test_reader_selection_by_partial_name(pcscd, virtual_card):
    names = list_readers()
    assert names == [r.name for r in pcscd.readers]
    second = virtual_card("00 01", cls=ApplicationCard, atr=make_atr(b"second")).insert()
    with ApduTransport.open("pcd 00 01") as t:                   # any case, any unique part
        assert (t.reader, t.atr) == (second.reader.name, second.atr)
        assert t.transmit(SELECT).ok
    with pytest.raises(AmbiguousReader) as several:
        ApduTransport.open("Virtual PCD")
    assert set(several.value.matches) == set(names)
    with pytest.raises(ReaderNotFound) as none:
        ApduTransport.open("ACR122")
    assert all(name in str(none.value) for name in names)


def test_no_card_in_the_reader(pcscd):
    with pytest.raises(NoCard, match="insert the card"):
        ApduTransport.open("00 01")


def test_pcscd_stopped_and_started_again(pcscd, virtual_card):
    card = virtual_card("00 00", cls=ApplicationCard).insert()
    transport = ApduTransport.open("00 00")
    assert transport.transmit(SELECT).ok
    pcscd.stop()
    with pytest.raises(ReaderServiceUnavailable, match="pcscd"):
        transport.transmit(SELECT)
    transport.close()
    with pytest.raises(ReaderServiceUnavailable, match="0x8010001D"):
        ApduTransport.open("00 00")
    pcscd.start()
    card.insert()
    with ApduTransport.open("00 00") as again:
        assert again.transmit(SELECT).ok


def test_apdu_round_trip_is_fast(transport):
    """TCP_QUICKACK in the virtual card: without it every APDU waits ~44 ms for a delayed ACK."""
    started = time.monotonic()
    for _ in range(20):
        transport.transmit(SELECT)
    assert (time.monotonic() - started) / 20 < 0.02

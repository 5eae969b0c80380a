"""The pure parts of the PC/SC drivers: APDU building, status words, reader names, events."""

from __future__ import annotations

import pytest

from drivers.pcsc import (
    AmbiguousReader,
    ApduError,
    AuthenticationBlocked,
    CardInserted,
    CardStatusError,
    CardWithdrawn,
    FileNotFound,
    ReaderAdded,
    ReaderNotFound,
    ReaderRemoved,
    RecordNotFound,
    Response,
    SecurityStatusNotSatisfied,
    VerificationFailed,
    select_reader,
)
from drivers.pcsc.apdu import check_command, get_response, with_le
from drivers.pcsc.events import SlotState, changes
from drivers.pcsc.status import error_for

SELECT = bytes.fromhex("00A4040007A0000003330101")


def test_response_from_bytes():
    r = Response.from_bytes(bytes.fromhex("01029000"))
    assert (r.data, r.sw1, r.sw2, r.sw, r.ok) == (b"\x01\x02", 0x90, 0x00, 0x9000, True)
    assert bytes(r) == bytes.fromhex("01029000")
    with pytest.raises(ApduError):
        Response.from_bytes(b"\x90")


@pytest.mark.parametrize("command, le, expected", [
    ("00B00000", 0x10, "00B0000010"),                              # case 1: Le appended
    ("00B0000000", 0x10, "00B0000010"),                            # case 2: Le replaced
    ("00A4040002A000", 0x20, "00A4040002A00020"),                  # case 3: Le appended
    ("00A4040002A00000", 0x20, "00A4040002A00020"),                # case 4: Le replaced
])
def test_with_le(command, le, expected):
    assert with_le(bytes.fromhex(command), le) == bytes.fromhex(expected)


@pytest.mark.parametrize("command", ["00A404", "00A4040003A000", "00A4040000000102"])
def test_malformed_commands_are_refused(command):
    with pytest.raises(ApduError):
        check_command(bytes.fromhex(command))


def test_get_response_keeps_the_logical_channel_of_interindustry_classes():
    assert get_response(0x00, 0x20) == bytes.fromhex("00C0000020")
    assert get_response(0x01, 0x00) == bytes.fromhex("01C0000000")
    assert get_response(0x84, 0x10) == bytes.fromhex("00C0000010")   # proprietary CLA


@pytest.mark.parametrize("sw, error", [
    (0x6982, SecurityStatusNotSatisfied),
    (0x6983, AuthenticationBlocked),
    (0x63C2, VerificationFailed),
    (0x6A82, FileNotFound),
    (0x6A83, RecordNotFound),
    (0x6D00, CardStatusError),
])
def test_status_words_map_to_typed_errors(sw, error):
    found = error_for(SELECT, Response(b"", sw >> 8, sw & 0xFF))
    assert type(found) is error
    assert found.sw == sw and found.header == SELECT[:4]
    assert f"{sw:04X}" in str(found) and "A0000003" not in str(found)   # header only, no data


def test_verification_failed_counts_tries_and_9000_is_no_error():
    assert error_for(SELECT, Response(b"", 0x63, 0xC1)).tries_left == 1
    assert error_for(SELECT, Response(b"\x01", 0x90, 0x00)) is None
    assert type(error_for(SELECT, Response(b"", 0x63, 0x00))) is CardStatusError


READERS = ["ACS ACR1252 Dual Reader PICC 00 00", "ACS ACR1252 Dual Reader SAM 00 01",
           "Virtual PCD 00 00"]


@pytest.mark.parametrize("wanted, expected", [
    ("PICC", READERS[0]), ("sam", READERS[1]), ("virtual", READERS[2]),
    ("Virtual PCD 00 00", READERS[2]),
])
def test_select_reader_by_any_unique_part(wanted, expected):
    assert select_reader(wanted, READERS) == expected


def test_select_reader_lists_the_readers_when_none_or_several_match():
    with pytest.raises(ReaderNotFound) as none:
        select_reader("ACR122", READERS)
    assert all(name in str(none.value) for name in READERS)
    assert none.value.available == tuple(READERS)
    with pytest.raises(AmbiguousReader) as several:
        select_reader("ACR1252", READERS)
    assert several.value.matches == tuple(READERS[:2])
    assert READERS[0] in str(several.value) and READERS[2] not in str(several.value)
    assert select_reader("", READERS[2:]) == READERS[2]         # the only reader
    with pytest.raises(ReaderNotFound):
        select_reader("", [])


CARD = SlotState(True, b"\x3b\x01", 3)
EMPTY = SlotState(False, b"", 4)


def test_changes_between_snapshots():
    assert changes({}, {"A": CARD, "B": EMPTY}) == [
        ReaderAdded("A"), CardInserted("A", CARD.atr), ReaderAdded("B")]
    assert changes({"A": CARD}, {"A": CARD}) == []
    assert changes({"A": CARD}, {"A": EMPTY}) == [CardWithdrawn("A", CARD.atr)]
    assert changes({"A": EMPTY}, {"A": CARD}) == [CardInserted("A", CARD.atr)]


def test_a_card_swapped_between_two_looks_is_withdrawn_then_inserted():
    other = SlotState(True, CARD.atr, CARD.counter + 2)
    assert changes({"A": CARD}, {"A": other}) == [
        CardWithdrawn("A", CARD.atr), CardInserted("A", CARD.atr)]


def test_a_reader_vanishing_with_its_card_loses_the_card_first():
    """The runtime path a USB reader pulled off the Pi takes (vpcd readers cannot vanish while
    pcscd runs, so the monitor's handling of it is checked here, on snapshots)."""
    assert changes({"A": CARD, "B": EMPTY}, {"B": EMPTY}) == [
        CardWithdrawn("A", CARD.atr), ReaderRemoved("A")]
    assert changes({"B": EMPTY}, {"A": CARD, "B": EMPTY}) == [
        ReaderAdded("A"), CardInserted("A", CARD.atr)]

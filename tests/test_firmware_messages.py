"""Messages of the co-processor link: byte vectors, round trips, refusals, and the document's
table kept in step with the code's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from firmware_bridge import messages as m
from firmware_bridge.errors import MessageError

DOC = Path(__file__).resolve().parent.parent / "docs" / "firmware-protocol.md"

SAMPLES = [
    m.HelloRequest(1),
    m.Hello(1, 1, 4, 2, 1, m.BootStatus.TRIAL, 0x0C01),
    m.Heartbeat(123456),
    m.TagSeen(2, -55, bytes.fromhex("30751feb705c5904e3d50d70")),
    m.WeightSample(0, 152340, True, False, False),
    m.WeightSample(1, -20, False, False, True),
    m.ClimateSample(0, -1250, 6550, True),
    m.InputEdge(3, True, 4000000000),
    m.SetOutput(1, True, 500),
    m.OutputState(1, False),
    m.UpdateBegin(1, 5, 0, 70000, bytes(range(32)), bytes(64), 192),
    m.UpdateStatus(m.UpdateState.RECEIVING, 1, 4096, b"\x11" * 32),
    m.UpdateChunk(4096, 0xBEEF, b"\x00\x01\x02"),
    m.UpdateChunkAck(4099, m.ChunkStatus.OK),
    m.UpdateCommit(b"\x22" * 32),
    m.UpdateConfirm(1, 5, 0),
    m.UpdateQuery(),
    m.Error(m.ErrorCode.SENSOR_FAULT, 0x12, "SHT3x NACK"),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda x: type(x).__name__)
def test_round_trip(message):
    assert m.decode(m.encode(message)) == message


def test_byte_vectors_from_the_document():
    assert m.encode(m.WeightSample(0, 152340, True, False, False)).hex(" ") == \
        "11 00 00 02 53 14 01 00 00"
    assert m.encode(m.ClimateSample(0, -1250, 6550, True)).hex(" ") == \
        "12 00 fb 1e 19 96 01"
    assert m.encode(m.TagSeen(2, -55, bytes.fromhex("e2801160"))).hex(" ") == \
        "10 02 c9 04 e2 80 11 60"
    assert m.encode(m.Hello(1, 1, 4, 2, 0, 0, 0x0C01)).hex(" ") == \
        "02 01 00 01 00 04 00 02 00 00 0c 01"


@pytest.mark.parametrize("payload, words", [
    (b"", "empty"),
    (b"\x55", "unknown message type 0x55"),
    (b"\x11\x00\x00", "cut short"),
    (b"\x11\x00\x00\x02\x53\x14\x02\x00\x00", "not 0 or 1"),
    (b"\x03\x00\x00\x00\x01\xff", "1 bytes too many"),
    (b"\x10\x01\xc9\x05\xe2", "cut short"),
    (b"\x7f\x01\x00\x02\xc3\xa9", "ASCII"),
])
def test_bad_payloads_are_message_errors(payload, words):
    with pytest.raises(MessageError, match=words):
        m.decode(payload)


@pytest.mark.parametrize("message, words", [
    (m.WeightSample(0, 2**31, True, False, False), "grams"),
    (m.InputEdge(256, True, 0), "input"),
    (m.UpdateCommit(b"short"), "32 bytes"),
    (m.UpdateChunk(0, 0, bytes(300)), "exceeds"),
    (m.Error(1, 0, "température"), "detail"),
])
def test_values_that_do_not_fit_are_refused(message, words):
    with pytest.raises(MessageError, match=words):
        m.encode(message)


def test_document_lists_every_message_as_defined():
    """Each message has a row `| 0xNN | Name | field:kind ... |` in the document."""
    text = DOC.read_text(encoding="utf-8")
    rows = {int(t, 16): (name, layout.strip()) for t, name, layout in
            re.findall(r"^\| (0x[0-9a-f]{2}) \| (\w+) \| ([^|]+)\|", text, re.M)}
    expected = {t: (name, layout) for t, name, layout in m.layout_rows()}
    assert rows == expected

"""The "BB ... 7E" protocol against frames written out byte by byte from the module's format
(docs/tags.md), not produced by our own builder."""

from __future__ import annotations

import pytest

from drivers.tags import bb7e
from drivers.tags.bb7e_framing import Frame, Framer
from drivers.tags.errors import (
    ChecksumError,
    GarbageError,
    MalformedFrame,
    OversizeFrame,
    TagCrcError,
    TruncatedFrame,
)
from tests.support.tag_sim_frames import NO_TAG, NOTICE, NOTICE_ANT3, STOP_OK


def test_command_builders_match_the_published_frames():
    assert bb7e.single_inventory() == bytes([0xBB, 0x00, 0x22, 0x00, 0x00, 0x22, 0x7E])
    assert bb7e.multi_poll(10000) == bytes([0xBB, 0x00, 0x27, 0x00, 0x03, 0x22, 0x27, 0x10,
                                            0x83, 0x7E])
    assert bb7e.stop() == bytes([0xBB, 0x00, 0x28, 0x00, 0x00, 0x28, 0x7E])
    with pytest.raises(ValueError):
        bb7e.multi_poll(0)


def test_worked_example_notice():
    [msg] = bb7e.Decoder().feed(NOTICE)
    assert isinstance(msg, bb7e.TagNotice)
    assert msg.rssi == -55
    assert msg.pc == 0x3400
    assert msg.epc_hex == "30751feb705c5904e3d50d70"
    assert msg.crc == 0x3A76
    assert msg.antenna is None
    assert msg.raw == NOTICE


def test_notice_with_antenna_byte():
    [msg] = bb7e.Decoder().feed(NOTICE_ANT3)
    assert isinstance(msg, bb7e.TagNotice)
    assert (msg.epc_hex, msg.rssi, msg.antenna) == ("30751feb705c5904e3d50d70", -55, 3)


def test_positive_rssi_and_error_frames():
    # RSSI 05 is +5 dBm (checksum EF - C9 + 05 = 2B).
    frame = bytearray(NOTICE)
    frame[5], frame[22] = 0x05, 0x2B
    [msg] = bb7e.Decoder().feed(bytes(frame))
    assert msg.rssi == 5
    no_tag, stop_ok = bb7e.Decoder().feed(NO_TAG + STOP_OK)
    assert isinstance(no_tag, bb7e.ErrorFrame) and no_tag.no_tag and no_tag.code == 0x15
    assert "no tag" in no_tag.meaning
    assert isinstance(stop_ok, bb7e.Response)
    assert (stop_ok.type, stop_ok.command, stop_ok.params) == (1, 0x28, b"\x00")
    # Command error 17: BB 01 FF 00 01 17 18 7E
    [err] = bb7e.Decoder().feed(bytes([0xBB, 0x01, 0xFF, 0x00, 0x01, 0x17, 0x18, 0x7E]))
    assert err.code == 0x17 and not err.no_tag and "did not understand" in err.meaning


def test_builder_for_simulators_agrees_with_the_worked_example():
    epc = bytes.fromhex("30751feb705c5904e3d50d70")
    assert bb7e.encode_notice(epc, -55, pc_low=0x400) == NOTICE
    assert bb7e.encode_notice(epc, -55, antenna=3, pc_low=0x400) == NOTICE_ANT3
    assert bb7e.encode_error(0x15) == NO_TAG


def test_frames_split_anywhere_and_glued_together():
    stream = NOTICE + NO_TAG + NOTICE_ANT3 + STOP_OK
    for cut in range(1, len(stream)):
        framer = Framer()
        out = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert [f.raw for f in out] == [NOTICE, NO_TAG, NOTICE_ANT3, STOP_OK]
        assert all(isinstance(f, Frame) for f in out)


def test_one_byte_at_a_time():
    framer = Framer()
    out = [f for b in NOTICE + NO_TAG for f in framer.feed(bytes([b]))]
    assert [f.raw for f in out] == [NOTICE, NO_TAG]


def test_checksum_error():
    bad = bytearray(NOTICE)
    bad[22] = 0xEE
    out = Framer().feed(bytes(bad) + NO_TAG)
    assert isinstance(out[0], ChecksumError)
    assert "checksum ee should be ef" in str(out[0])
    assert out[0].raw == bytes(bad)
    assert out[1].raw == NO_TAG


def test_garbage_between_frames_is_reported_and_frames_survive():
    noise = bytes([0x00, 0xFF, 0x7E, 0x13, 0x37])
    out = Framer().feed(noise + NOTICE + bytes([0x55, 0xAA]) + NO_TAG)
    assert isinstance(out[0], GarbageError) and out[0].raw == noise
    assert "5 bytes outside any frame" in str(out[0])
    assert out[1].raw == NOTICE
    assert isinstance(out[2], GarbageError) and out[2].raw == bytes([0x55, 0xAA])
    assert out[3].raw == NO_TAG


def test_bb_in_noise_with_an_impossible_type_is_garbage():
    noise = bytes([0xBB, 0x09, 0x00, 0xBB, 0x42])
    out = Framer().feed(noise + NO_TAG)
    assert [type(f) for f in out] == [GarbageError, Frame]
    assert out[0].raw == noise


def test_truncated_frame_followed_by_a_good_one():
    cut = NOTICE[:12]                      # the module was switched off mid-notice
    out = Framer().feed(cut + NOTICE + NO_TAG)
    assert isinstance(out[0], TruncatedFrame) and out[0].raw == cut
    assert "cut short" in str(out[0])
    assert [f.raw for f in out[1:]] == [NOTICE, NO_TAG]


def test_truncated_at_the_end_of_the_stream_is_reported_by_flush():
    framer = Framer()
    assert [f.raw for f in framer.feed(NO_TAG + NOTICE[:9])] == [NO_TAG]
    out = framer.flush()
    assert len(out) == 1 and isinstance(out[0], TruncatedFrame)
    assert out[0].raw == NOTICE[:9]
    assert framer.flush() == []


def test_oversize_header():
    huge = bytes([0xBB, 0x02, 0x22, 0x7F, 0xFF, 0x01, 0x02])
    out = Framer(max_params=512).feed(huge + NO_TAG)
    assert isinstance(out[0], OversizeFrame) and "32767 parameter bytes" in str(out[0])
    assert out[0].raw == huge
    assert out[1].raw == NO_TAG


def test_notice_length_must_agree_with_its_pc_word():
    # PC 3000 announces 6 words, but only 4 EPC bytes follow: PL 09.
    body = [0x02, 0x22, 0x00, 0x09, 0xC9, 0x30, 0x00, 0xDE, 0xAD, 0xBE, 0xEF, 0x12, 0x34]
    frame = bytes([0xBB, *body, sum(body) & 0xFF, 0x7E])
    [msg] = bb7e.Decoder().feed(frame)
    assert isinstance(msg, MalformedFrame)
    assert "96-bit EPC" in str(msg)


def test_corrupted_tag_crc():
    bad = bytearray(NOTICE)
    bad[21] ^= 0x01                        # CRC 3A77, checksum adjusted to F0
    bad[22] = 0xF0
    [msg] = bb7e.Decoder().feed(bytes(bad))
    assert isinstance(msg, TagCrcError) and "3a77" in str(msg)


def test_command_frame_from_the_module_side_is_rejected():
    [msg] = bb7e.Decoder().feed(bytes([0xBB, 0x00, 0x22, 0x00, 0x00, 0x22, 0x7E]))
    assert isinstance(msg, MalformedFrame) and "looped back" in str(msg)


def test_short_epc_notice():
    # 32-bit EPC DE AD BE EF: PC 1000 (2 words), CRC 2F3C, RSSI B0 (-80 dBm), PL 09.
    frame = bytes([0xBB, 0x02, 0x22, 0x00, 0x09, 0xB0, 0x10, 0x00, 0xDE, 0xAD, 0xBE, 0xEF,
                   0x2F, 0x3C, 0x90, 0x7E])
    [msg] = bb7e.Decoder().feed(frame)
    assert (msg.epc_hex, msg.rssi, msg.pc) == ("deadbeef", -80, 0x1000)

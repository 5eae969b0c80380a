"""The co-processor link: frame codec vectors, and two real Link ends over a socat pty pair with
lost, corrupted and noisy frames, peer restarts and a wrong protocol version."""

from __future__ import annotations

import threading

import pytest

from firmware_bridge.errors import FrameError, LinkError, LinkTimeout, ProtocolVersionError
from firmware_bridge.faults import Faults, FaultyPort
from firmware_bridge.frames import (
    MAX_ENCODED,
    MAX_PAYLOAD,
    Frame,
    Kind,
    Splitter,
    crc16,
    decode_frame,
    encode_frame,
)
from firmware_bridge.link import Link, open_port
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.pty",)


def test_crc_is_ibm_3740_check_value():
    assert crc16(b"123456789") == 0x29B1


def test_frame_vector():
    # kind DATA, seq 5, payload 00 11: CRC over 01 05 00 11, then COBS, then the delimiter
    wire = encode_frame(Frame(Kind.DATA, 5, b"\x00\x11"))
    body = b"\x01\x05\x00\x11"
    check = crc16(body).to_bytes(2, "big")
    assert wire == b"\x03\x01\x05\x04\x11" + check + b"\x00"
    assert b"\x00" not in wire[:-1]
    assert decode_frame(wire[:-1]) == Frame(Kind.DATA, 5, b"\x00\x11")


@pytest.mark.parametrize("bad", [b"", b"\x05\x01", b"\x02\x01\x01", b"\x01" * (MAX_ENCODED + 1)])
def test_bad_frames_are_frame_errors(bad):
    with pytest.raises(FrameError):
        decode_frame(bad)


def test_one_flipped_bit_fails_the_crc():
    wire = bytearray(encode_frame(Frame(Kind.DATA, 9, b"weight")))
    wire[3] ^= 0x04
    with pytest.raises(FrameError, match="CRC"):
        decode_frame(bytes(wire[:-1]))


def test_payload_limit():
    encode_frame(Frame(Kind.DATA, 0, bytes(MAX_PAYLOAD)))
    assert len(encode_frame(Frame(Kind.DATA, 0, bytes(MAX_PAYLOAD)))) <= MAX_ENCODED + 1
    with pytest.raises(FrameError):
        Frame(Kind.DATA, 0, bytes(MAX_PAYLOAD + 1))


def test_splitter_resyncs_after_garbage_and_overlong_noise():
    good = encode_frame(Frame(Kind.DATA, 1, b"abc"))
    split = Splitter()
    out = split.feed(b"\x17\x42" + good[:4])          # joined mid-stream: noise, half a frame
    out += split.feed(good[4:] + b"\xff" * 600 + b"\x00" + good)
    frames = [x for x in out if isinstance(x, Frame)]
    errors = [x for x in out if isinstance(x, FrameError)]
    assert frames == [Frame(Kind.DATA, 1, b"abc")]     # the first copy was spoiled by noise
    assert len(errors) == 2 and "garbage" in str(errors[1])
    assert split.feed(good) == [Frame(Kind.DATA, 1, b"abc")]


class End:
    """One Link end that records what it receives."""

    def __init__(self, port, name, **kw):
        self.got: list[bytes] = []
        self.resets = []
        self.link = Link(port, on_message=self.got.append, on_peer_reset=self.resets.append,
                         name=name, **kw)


@pytest.fixture
def ends(pty_pair):
    made = []

    def make(faults=None, peer_version=1, peer_boot=None, **kw):
        pi = End(open_port(str(pty_pair.device)), "pi", **kw)
        faulty = FaultyPort(open_port(str(pty_pair.peer)), faults)
        box = End(faulty, "box", version=peer_version, boot_id=peer_boot, **kw)
        made.extend([pi.link, box.link])
        box.link.start()
        return pi, box, faulty

    yield make
    for link in made:
        link.close()


def test_lossy_link_delivers_every_message_once_and_in_order(ends):
    pi, box, faulty = ends(Faults(drop=0.05, corrupt=0.05, noise=0.02, seed=7), ack_timeout=0.02)
    pi.link.handshake()
    n = 150

    def talk(end, tag):
        for i in range(n):
            end.link.send(f"{tag}{i}".encode())

    threads = [threading.Thread(target=talk, args=(pi, "p")),
               threading.Thread(target=talk, args=(box, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    wait_for(lambda: len(box.got) == n and len(pi.got) == n, 10, what="all messages")
    assert box.got == [f"p{i}".encode() for i in range(n)]
    assert pi.got == [f"b{i}".encode() for i in range(n)]
    assert faulty.dropped + faulty.corrupted >= 20      # the faults really happened
    assert pi.link.stats.retransmits + box.link.stats.retransmits > 0
    assert pi.link.stats.bad_frames + box.link.stats.bad_frames > 0


def test_peer_restart_resets_sequence_and_is_reported(ends):
    pi, box, _ = ends(peer_boot=0x1111)
    assert pi.link.handshake().boot_id == 0x1111
    for i in range(3):
        box.link.send(bytes([i]))
    # the co-processor reboots: a new Link with a new boot id, sequence numbers from 1 again
    port = box.link.port
    box.link._closed.set()
    box.link._reader.join(2)
    again = End(port, "box2", boot_id=0x2222)
    again.link.start()
    again.link.handshake()
    again.link.send(b"\x00")          # seq 1 again: must not be taken for a duplicate
    again.link.send(b"\x01")
    wait_for(lambda: len(pi.got) == 5, 5, what="messages after the restart")
    assert pi.got == [b"\x00", b"\x01", b"\x02", b"\x00", b"\x01"]
    assert pi.link.peer.boot_id == 0x2222 and pi.link.stats.peer_resets == 1
    assert pi.resets[-1].boot_id == 0x2222
    again.link.close()


def test_wrong_protocol_version_is_a_clear_error(ends):
    pi, box, _ = ends(peer_version=2)
    with pytest.raises(ProtocolVersionError, match="version 2.*version 1"):
        pi.link.handshake()
    with pytest.raises(ProtocolVersionError):
        pi.link.send(b"x")


def test_silent_peer_times_out(pty_pair):
    link = Link(open_port(str(pty_pair.device)), on_message=lambda _: None, retries=3,
                ack_timeout=0.02)
    try:
        with pytest.raises(LinkTimeout, match="handshake"):
            link.handshake(timeout=0.2)
        with pytest.raises(LinkTimeout, match="acknowledgement"):
            link.send(b"x")
    finally:
        link.close()


def test_unopenable_port():
    with pytest.raises(LinkError, match="cannot open"):
        open_port("/nonexistent/tty-firmware")

"""Link frames as pure functions over bytes: encode, decode, and split a byte stream.

A frame before encoding is

    kind (1) | seq (1) | payload (0..MAX_PAYLOAD) | CRC-16/IBM-3740 (2, big-endian)

the CRC (also called CRC-16/CCITT-FALSE: polynomial 0x1021, initial 0xFFFF, no reflection, no
final XOR) covering kind, seq and payload. The frame is then COBS-encoded, which removes every
0x00 byte, and followed by one 0x00 delimiter. A receiver that joins mid-stream, or sees noise,
loses at most the bytes up to the next delimiter: that is the whole resynchronisation.
docs/firmware-protocol.md describes it byte by byte.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cobs import cobs
from crc import Calculator, Crc16

from .errors import FrameError

DELIMITER = b"\x00"
HEADER_LEN = 2
CRC_LEN = 2
MAX_PAYLOAD = 250
MAX_FRAME = HEADER_LEN + MAX_PAYLOAD + CRC_LEN            # 254 bytes before COBS
MAX_ENCODED = MAX_FRAME + MAX_FRAME // 254 + 1           # COBS adds 1 byte per 254

_CRC = Calculator(Crc16.IBM_3740.value, optimized=True)


def crc16(data: bytes) -> int:
    """CRC-16/IBM-3740 (CCITT-FALSE) of `data`; crc16(b"123456789") == 0x29B1."""
    return _CRC.checksum(data)


class Kind(enum.IntEnum):
    DATA = 0x01       # a message; the receiver acknowledges its seq
    ACK = 0x02        # acknowledges DATA seq; no payload
    SYNC = 0x03       # "I (re)started": version and boot id; the peer resets its receive state
    SYNC_ACK = 0x04   # answer to SYNC, with the answering side's version and boot id


@dataclass(frozen=True)
class Frame:
    kind: Kind
    seq: int
    payload: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.seq <= 0xFF:
            raise FrameError(f"frame seq {self.seq} is not 0-255")
        if len(self.payload) > MAX_PAYLOAD:
            raise FrameError(f"frame payload of {len(self.payload)} bytes exceeds "
                             f"{MAX_PAYLOAD}")


def encode_frame(frame: Frame) -> bytes:
    """The frame's bytes on the wire: COBS(kind seq payload crc) and the 0x00 delimiter."""
    body = bytes((frame.kind, frame.seq)) + frame.payload
    return cobs.encode(body + crc16(body).to_bytes(2, "big")) + DELIMITER


def decode_frame(encoded: bytes) -> Frame:
    """One frame from the bytes between two delimiters (without them).

    Raises FrameError for anything else: never another exception, whatever the bytes.
    """
    if not encoded:
        raise FrameError("empty frame (two delimiters in a row)")
    if len(encoded) > MAX_ENCODED:
        raise FrameError(f"frame of {len(encoded)} encoded bytes exceeds {MAX_ENCODED}")
    try:
        raw = cobs.decode(encoded)
    except cobs.DecodeError as exc:
        raise FrameError(f"not COBS: {exc}") from None
    if len(raw) < HEADER_LEN + CRC_LEN:
        raise FrameError(f"frame of {len(raw)} bytes is shorter than header and CRC")
    if len(raw) > MAX_FRAME:
        raise FrameError(f"frame of {len(raw)} bytes exceeds {MAX_FRAME}")
    body, check = raw[:-CRC_LEN], int.from_bytes(raw[-CRC_LEN:], "big")
    if crc16(body) != check:
        raise FrameError(f"CRC mismatch: frame says {check:04x}, bytes give {crc16(body):04x}")
    try:
        kind = Kind(body[0])
    except ValueError:
        raise FrameError(f"unknown frame kind 0x{body[0]:02x}") from None
    return Frame(kind, body[1], bytes(body[HEADER_LEN:]))


class Splitter:
    """Cuts a byte stream at delimiters into decoded frames and FrameErrors, in order.

    Pure: no I/O, no clock. Bytes beyond MAX_ENCODED without a delimiter are dropped as one
    error (noise or a wrong baud rate), so memory stays bounded whatever arrives.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        out: list[Frame | FrameError] = []
        for chunk in _cut(data):
            if chunk == DELIMITER:
                if self._overflow:
                    out.append(FrameError(f"garbage of more than {MAX_ENCODED} bytes "
                                          "without a delimiter dropped"))
                elif self._buf:
                    try:
                        out.append(decode_frame(bytes(self._buf)))
                    except FrameError as exc:
                        out.append(exc)
                self._buf.clear()
                self._overflow = False
            elif not self._overflow:
                self._buf += chunk
                if len(self._buf) > MAX_ENCODED:
                    self._buf.clear()
                    self._overflow = True
        return out

    def reset(self) -> None:
        """Forget a partial frame (the port was reopened)."""
        self._buf.clear()
        self._overflow = False


def _cut(data: bytes):
    """Runs of non-delimiter bytes and single delimiters, in order."""
    start = 0
    while True:
        end = data.find(DELIMITER, start)
        if end < 0:
            if start < len(data):
                yield data[start:]
            return
        if end > start:
            yield data[start:end]
        yield DELIMITER
        start = end + 1

"""The "BB ... 7E" UHF module protocol (M100 / JRD-4035 class): what frames mean, and the
commands the agent sends. Framing is in bb7e_framing; the reader loop in bb7e_reader.

Tag notice (type 02, command 22, for single inventory and multi-poll alike):

    BB 02 22 PL_H PL_L  RSSI  PC(2)  EPC(2 x PC words)  CRC(2)  [antenna]  checksum 7E

RSSI is a signed byte in dBm. The top 5 bits of the PC word count the EPC's 16-bit words, so
PL is 0x11 for a 96-bit EPC. CRC is the tag's CRC-16 over PC and EPC, checked here. Multi-port
modules of this family append one byte with the antenna (port) number; a notice one byte longer
than its PC word implies is read that way (see docs/tags.md). Error frames are responses with
command FF and one code byte; code 15 means an inventory round found no tag, which is normal.
"""

from __future__ import annotations

from dataclasses import dataclass

from .bb7e_framing import COMMAND, NOTICE, RESPONSE, Frame, Framer, checksum
from .errors import FrameError, MalformedFrame, TagCrcError

NAME = "bb7e"
BAUDRATE = 115200

INVENTORY, MULTI_POLL, STOP, ERROR = 0x22, 0x27, 0x28, 0xFF
NO_TAG = 0x15
MAX_POLLS = 0xFFFF

#: Error codes. 15 is in the published examples; the others are as the vendor's manual names
#: them (not checked against hardware).
ERROR_CODES = {
    0x15: "no tag answered the inventory round",
    0x17: "the module did not understand the command",
    0x20: "frequency hopping failed",
    0x09: "reading tag memory failed",
    0x10: "writing tag memory failed",
    0x16: "tag access refused (wrong access password)",
}


@dataclass(frozen=True)
class TagNotice:
    """One tag seen by the module."""

    rssi: int               # dBm
    pc: int
    epc: bytes
    crc: int
    antenna: int | None     # from the frame, None when the module does not say
    raw: bytes

    @property
    def epc_hex(self) -> str:
        return self.epc.hex()


@dataclass(frozen=True)
class ErrorFrame:
    """The module answered with an error code (BB 01 FF 00 01 code cs 7E)."""

    code: int
    raw: bytes

    @property
    def no_tag(self) -> bool:
        return self.code == NO_TAG

    @property
    def meaning(self) -> str:
        return ERROR_CODES.get(self.code, f"error code {self.code:02x} (see the module's manual)")


@dataclass(frozen=True)
class Response:
    """Any other answer from the module (e.g. to stop: BB 01 28 00 01 00 2A 7E)."""

    type: int
    command: int
    params: bytes
    raw: bytes


Message = TagNotice | ErrorFrame | Response


# -- commands -------------------------------------------------------------------------------

def build(command: int, params: bytes = b"", frame_type: int = COMMAND) -> bytes:
    """One frame: header, length, parameters, checksum, end."""
    body = bytes([frame_type, command, len(params) >> 8, len(params) & 0xFF]) + params
    return bytes([0xBB]) + body + bytes([checksum(body), 0x7E])


def single_inventory() -> bytes:
    return build(INVENTORY)


def multi_poll(count: int = 10000) -> bytes:
    """Inventory rounds repeated `count` times (1..65535); the module then stops by itself."""
    if not 1 <= count <= MAX_POLLS:
        raise ValueError(f"multi-poll count must be 1..{MAX_POLLS}, got {count}")
    return build(MULTI_POLL, bytes([0x22, count >> 8, count & 0xFF]))


def stop() -> bytes:
    return build(STOP)


# -- frames from the module -----------------------------------------------------------------

def crc16(data: bytes) -> int:
    """EPC Gen2 CRC-16 (ISO/IEC 13239: polynomial 1021, preset FFFF, complemented)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc ^ 0xFFFF


def epc_words(pc: int) -> int:
    return pc >> 11


def parse_notice(frame: Frame) -> TagNotice:
    p = frame.params
    if len(p) < 5:
        raise MalformedFrame(f"tag notice with {len(p)} parameter bytes, fewer than RSSI, PC "
                             "and CRC need", frame.raw)
    pc = p[1] << 8 | p[2]
    n = 2 * epc_words(pc)
    if len(p) not in (5 + n, 6 + n):
        raise MalformedFrame(f"tag notice with {len(p)} parameter bytes, but its PC word "
                             f"{pc:04x} announces a {n * 8}-bit EPC ({5 + n} bytes)", frame.raw)
    epc, crc = p[3:3 + n], p[3 + n] << 8 | p[4 + n]
    if crc16(p[1:3 + n]) != crc:
        raise TagCrcError(f"tag CRC {crc:04x} does not match PC and EPC "
                          f"({crc16(p[1:3 + n]):04x})", frame.raw)
    if not epc:
        raise MalformedFrame("tag notice with an empty EPC", frame.raw)
    rssi = p[0] - 256 if p[0] >= 0x80 else p[0]
    antenna = p[5 + n] if len(p) == 6 + n else None
    if antenna == 0:
        raise MalformedFrame("tag notice from antenna 0 (ports are numbered from 1)", frame.raw)
    return TagNotice(rssi, pc, bytes(epc), crc, antenna, frame.raw)


def interpret(frame: Frame) -> Message:
    """What a checked frame from the module means. Raises FrameError for content the protocol
    does not allow."""
    if frame.type == NOTICE and frame.command == INVENTORY:
        return parse_notice(frame)
    if frame.type == RESPONSE and frame.command == ERROR:
        if len(frame.params) != 1:
            raise MalformedFrame(f"error frame with {len(frame.params)} parameter bytes "
                                 "(expected one code byte)", frame.raw)
        return ErrorFrame(frame.params[0], frame.raw)
    if frame.type == COMMAND:
        raise MalformedFrame("a command frame came from the module's side: is the line "
                             "looped back, or is this the wrong port?", frame.raw)
    return Response(frame.type, frame.command, frame.params, frame.raw)


class Decoder:
    """Framer and interpretation together: bytes in; notices, error frames, responses and
    FrameErrors (as values, in order) out."""

    def __init__(self, max_params: int = 512):
        self._framer = Framer(max_params)

    def feed(self, data: bytes) -> list[Message | FrameError]:
        return [self._one(f) for f in self._framer.feed(data)]

    def flush(self) -> list[Message | FrameError]:
        return [self._one(f) for f in self._framer.flush()]

    @staticmethod
    def _one(item: Frame | FrameError) -> Message | FrameError:
        if isinstance(item, FrameError):
            return item
        try:
            return interpret(item)
        except FrameError as exc:
            return exc


def encode_notice(epc: bytes, rssi: int, antenna: int | None = None,
                  pc_low: int = 0x00) -> bytes:
    """A tag notice as a module sends it (for simulators): PC from the EPC's length, the tag's
    CRC, RSSI clipped to a signed byte."""
    if not epc or len(epc) % 2 or len(epc) > 62:
        raise ValueError("an EPC is 2..62 bytes, whole 16-bit words")
    pc = (len(epc) // 2) << 11 | pc_low
    body = pc.to_bytes(2, "big") + epc
    rssi = max(-128, min(127, rssi)) & 0xFF
    params = bytes([rssi]) + body + crc16(body).to_bytes(2, "big")
    if antenna is not None:
        params += bytes([antenna])
    return build(INVENTORY, params, NOTICE)


def encode_error(code: int) -> bytes:
    return build(ERROR, bytes([code]), RESPONSE)

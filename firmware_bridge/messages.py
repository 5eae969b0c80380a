"""Every message on the co-processor link, defined once: a frozen dataclass per message, whose
`FIELDS` table drives both encoding and decoding.

A message is the payload of one DATA frame: one type byte, then its fields in table order,
big-endian, with no padding. `var` fields carry a one-byte length first; a `rest` field takes
the remaining bytes and comes last. Values are exact integers (grams, hundredths of a degree,
milliseconds); there is no float on the wire. docs/firmware-protocol.md shows each message byte
by byte; a test checks the document's table against this one.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import astuple, dataclass, fields
from typing import ClassVar

from .errors import MessageError
from .frames import MAX_PAYLOAD

_INTS = {"u8": ">B", "i8": ">b", "u16": ">H", "i16": ">h", "u32": ">I", "i32": ">i"}
_FIXED = {"b32": 32, "b64": 64}


class BootStatus(enum.IntEnum):
    NORMAL = 0        # running the confirmed image
    TRIAL = 1         # running a new image that has not been confirmed yet
    ROLLED_BACK = 2   # the new image failed to boot; the bootloader went back to the old one


class UpdateState(enum.IntEnum):
    IDLE = 0
    RECEIVING = 1     # next_offset says how much of the image the inactive slot holds
    COMPLETE = 2      # every byte is in, the SHA-256 matches; waiting for commit
    FAILED = 3        # SHA-256 or signature wrong after the last chunk; begin again


class ChunkStatus(enum.IntEnum):
    OK = 0
    BAD_CRC = 1       # the chunk's CRC does not match its data: send it again
    WRONG_OFFSET = 2  # not the expected offset: continue from next_offset
    NO_UPDATE = 3     # no update in progress: begin (again)


class ErrorCode(enum.IntEnum):
    BAD_MESSAGE = 1
    UNKNOWN_TYPE = 2
    SENSOR_FAULT = 3
    BAD_OUTPUT = 4
    UPDATE_REFUSED = 5


class Message:
    """Base of every message: TYPE is the first byte, FIELDS the layout of the rest."""

    TYPE: ClassVar[int]
    FIELDS: ClassVar[tuple[tuple[str, str], ...]]


def _message(type_: int, *layout: tuple[str, str]):
    def wrap(cls):
        cls = dataclass(frozen=True)(cls)
        cls.TYPE, cls.FIELDS = type_, layout
        names = tuple(f.name for f in fields(cls))
        if names != tuple(name for name, _ in layout):
            raise TypeError(f"{cls.__name__}: fields {names} differ from its layout")
        if type_ in REGISTRY:
            raise TypeError(f"message type 0x{type_:02x} defined twice")
        REGISTRY[type_] = cls
        return cls
    return wrap


REGISTRY: dict[int, type] = {}


@_message(0x01, ("protocol", "u8"))
class HelloRequest(Message):
    """Agent -> box: who are you? Answered by Hello."""
    protocol: int


@_message(0x02, ("protocol", "u8"), ("major", "u16"), ("minor", "u16"), ("patch", "u16"),
          ("active_slot", "u8"), ("boot_status", "u8"), ("hardware", "u16"))
class Hello(Message):
    """Box -> agent, after HelloRequest and after every boot: the running firmware."""
    protocol: int
    major: int
    minor: int
    patch: int
    active_slot: int      # 0 = A, 1 = B
    boot_status: int      # BootStatus
    hardware: int         # board id; an image names the board it is built for

    @property
    def version(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)


@_message(0x03, ("uptime_ms", "u32"))
class Heartbeat(Message):
    """Box -> agent, every second: the box is alive even when no input changes."""
    uptime_ms: int


@_message(0x10, ("antenna", "u8"), ("rssi", "i8"), ("epc", "var"))
class TagSeen(Message):
    """Box -> agent: one tag read by one antenna."""
    antenna: int          # 1-based
    rssi: int             # dBm
    epc: bytes


@_message(0x11, ("channel", "u8"), ("grams", "i32"), ("stable", "bool"), ("overload", "bool"),
          ("underload", "bool"))
class WeightSample(Message):
    """Box -> agent: the load cell's filtered weight in whole grams, with the box's own
    stable and range flags."""
    channel: int
    grams: int
    stable: bool
    overload: bool
    underload: bool


@_message(0x12, ("sensor", "u8"), ("temp_c100", "i16"), ("rh_c100", "u16"), ("ok", "bool"))
class ClimateSample(Message):
    """Box -> agent: temperature in hundredths of a degree Celsius, relative humidity in
    hundredths of a percent; ok False when the sensor failed (then the values are 0)."""
    sensor: int
    temp_c100: int
    rh_c100: int
    ok: bool


@_message(0x13, ("input", "u8"), ("level", "bool"), ("at_ms", "u32"))
class InputEdge(Message):
    """Box -> agent: a debounced digital input changed; at_ms is the box's uptime then."""
    input: int
    level: bool
    at_ms: int


@_message(0x20, ("output", "u8"), ("level", "bool"), ("pulse_ms", "u16"))
class SetOutput(Message):
    """Agent -> box: drive an output; pulse_ms > 0 returns it to the other level after that
    long (a door strike, a buzzer). Answered by OutputState."""
    output: int
    level: bool
    pulse_ms: int


@_message(0x21, ("output", "u8"), ("level", "bool"))
class OutputState(Message):
    """Box -> agent: an output's level after a SetOutput, and when a pulse ends."""
    output: int
    level: bool


@_message(0x30, ("major", "u16"), ("minor", "u16"), ("patch", "u16"), ("length", "u32"),
          ("sha256", "b32"), ("signature", "b64"), ("chunk_size", "u16"))
class UpdateBegin(Message):
    """Agent -> box: an image follows for the inactive slot. If the box already holds part of
    the image with this SHA-256, it keeps it and says where to resume. Answered by
    UpdateStatus."""
    major: int
    minor: int
    patch: int
    length: int
    sha256: bytes
    signature: bytes
    chunk_size: int


@_message(0x31, ("state", "u8"), ("slot", "u8"), ("next_offset", "u32"), ("sha256", "b32"))
class UpdateStatus(Message):
    """Box -> agent: the update's state (UpdateState), the slot being written, how many bytes
    it holds, and which image (all zero when idle)."""
    state: int
    slot: int
    next_offset: int
    sha256: bytes


@_message(0x32, ("offset", "u32"), ("crc", "u16"), ("data", "rest"))
class UpdateChunk(Message):
    """Agent -> box: image bytes at offset, with their CRC-16/IBM-3740."""
    offset: int
    crc: int
    data: bytes


@_message(0x33, ("next_offset", "u32"), ("status", "u8"))
class UpdateChunkAck(Message):
    """Box -> agent: the chunk was written (OK) or why not (ChunkStatus)."""
    next_offset: int
    status: int


@_message(0x34, ("sha256", "b32"))
class UpdateCommit(Message):
    """Agent -> box: boot the complete image on trial. Answered by UpdateStatus, then the box
    reboots (a SYNC and a Hello follow)."""
    sha256: bytes


@_message(0x35, ("major", "u16"), ("minor", "u16"), ("patch", "u16"))
class UpdateConfirm(Message):
    """Agent -> box: the trial image (this version) runs well; make it the one to boot.
    Answered by Hello with boot_status NORMAL."""
    major: int
    minor: int
    patch: int


@_message(0x36)
class UpdateQuery(Message):
    """Agent -> box: answer with UpdateStatus."""


@_message(0x7F, ("code", "u8"), ("about", "u8"), ("detail", "text"))
class Error(Message):
    """Box -> agent: something the agent sent or the box measured failed (ErrorCode); `about`
    is the message type concerned (0 when none), `detail` ASCII words for a technician."""
    code: int
    about: int
    detail: str


def encode(message: Message) -> bytes:
    """The payload bytes of `message`. Raises MessageError for a value that does not fit."""
    out = bytearray([message.TYPE])
    values = astuple(message)
    for (name, kind), value in zip(message.FIELDS, values, strict=True):
        where = f"{type(message).__name__}.{name}"
        try:
            if kind in _INTS:
                out += struct.pack(_INTS[kind], value)
            elif kind == "bool":
                out.append(1 if value else 0)
            elif kind in _FIXED:
                if not isinstance(value, bytes) or len(value) != _FIXED[kind]:
                    raise MessageError(f"{where} must be {_FIXED[kind]} bytes")
                out += value
            elif kind in ("var", "text"):
                data = value.encode("ascii") if kind == "text" else bytes(value)
                if len(data) > 255:
                    raise MessageError(f"{where} is longer than 255 bytes")
                out.append(len(data))
                out += data
            else:  # rest
                out += bytes(value)
        except (struct.error, TypeError, UnicodeEncodeError) as exc:
            raise MessageError(f"{where}={value!r} does not fit {kind}: {exc}") from None
    if len(out) > MAX_PAYLOAD:
        raise MessageError(f"{type(message).__name__} of {len(out)} bytes exceeds the frame "
                           f"payload limit of {MAX_PAYLOAD}")
    return bytes(out)


def decode(payload: bytes) -> Message:
    """The message in a DATA frame's payload. Raises MessageError for anything else: never
    another exception, whatever the bytes."""
    if not payload:
        raise MessageError("empty message")
    cls = REGISTRY.get(payload[0])
    if cls is None:
        raise MessageError(f"unknown message type 0x{payload[0]:02x}")
    pos, values = 1, []
    for name, kind in cls.FIELDS:
        where = f"{cls.__name__}.{name}"
        if kind in _INTS:
            size = struct.calcsize(_INTS[kind])
            _need(payload, pos, size, where)
            values.append(struct.unpack_from(_INTS[kind], payload, pos)[0])
            pos += size
        elif kind == "bool":
            _need(payload, pos, 1, where)
            if payload[pos] > 1:
                raise MessageError(f"{where} is {payload[pos]}, not 0 or 1")
            values.append(bool(payload[pos]))
            pos += 1
        elif kind in _FIXED:
            _need(payload, pos, _FIXED[kind], where)
            values.append(bytes(payload[pos:pos + _FIXED[kind]]))
            pos += _FIXED[kind]
        elif kind in ("var", "text"):
            _need(payload, pos, 1, where)
            size = payload[pos]
            _need(payload, pos + 1, size, where)
            data = bytes(payload[pos + 1:pos + 1 + size])
            if kind == "text":
                if not data.isascii():
                    raise MessageError(f"{where} is not ASCII text")
                values.append(data.decode("ascii"))
            else:
                values.append(data)
            pos += 1 + size
        else:  # rest
            values.append(bytes(payload[pos:]))
            pos = len(payload)
    if pos != len(payload):
        raise MessageError(f"{cls.__name__} has {len(payload) - pos} bytes too many")
    return cls(*values)


def _need(payload: bytes, pos: int, size: int, where: str) -> None:
    if pos + size > len(payload):
        raise MessageError(f"{where} is cut short: message of {len(payload)} bytes")


def layout_rows() -> list[tuple[int, str, str]]:
    """(type, name, "field:kind ...") for every message, for the document's table."""
    return [(t, cls.__name__, " ".join(f"{n}:{k}" for n, k in cls.FIELDS) or "-")
            for t, cls in sorted(REGISTRY.items())]

"""Framer for "BB ... 7E" UHF modules: a byte stream in, checked frames and clear errors out.

    BB  type  cmd  PL_H PL_L  params[PL]  checksum  7E
        checksum = (type + cmd + PL_H + PL_L + params) mod 256

Parameters are binary, so BB and 7E also occur inside frames: a frame is found by the length
its header announces, then confirmed by its end byte and checksum. After noise the framer
resynchronises on the next BB, so a burst of garbage costs at most the frame it hit, and the
frames that follow are still read. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import (
    ChecksumError,
    FrameError,
    GarbageError,
    OversizeFrame,
    TruncatedFrame,
)

HEAD, END = 0xBB, 0x7E
COMMAND, RESPONSE, NOTICE = 0x00, 0x01, 0x02
TYPES = {COMMAND: "command", RESPONSE: "response", NOTICE: "notice"}
OVERHEAD = 7          # BB type cmd PL_H PL_L checksum 7E


@dataclass(frozen=True)
class Frame:
    """One frame whose boundaries and checksum are good; `raw` is the whole frame."""

    type: int
    command: int
    params: bytes
    raw: bytes


def checksum(body: bytes) -> int:
    """The frame checksum over type..params."""
    return sum(body) & 0xFF


Framed = Frame | FrameError


class Framer:
    """Incremental: `feed` whatever the port returned, get what is now complete, in order.

    `max_params` bounds the parameter length a header may announce; a longer one is noise
    (a 496-bit EPC notice has 68 parameter bytes; memory reads stay far below 512).
    """

    def __init__(self, max_params: int = 512):
        self.max_params = max_params
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Framed]:
        self._buf += data
        out: list[Framed] = []
        self._split(out)
        return out

    def flush(self) -> list[Framed]:
        """Give up what is buffered (port closed, line quiet): a partial frame is reported."""
        out: list[Framed] = []
        buf = bytes(self._buf)
        self._buf.clear()
        if buf[:1] == bytes([HEAD]) and len(buf) > 1:
            out.append(TruncatedFrame(f"frame cut short: {len(buf)} bytes, then nothing", buf))
        else:
            _junk(out, buf)
        return out

    def _split(self, out: list[Framed]) -> None:
        buf = self._buf
        while buf:
            start = buf.find(HEAD)
            if start < 0:
                _junk(out, bytes(buf))
                buf.clear()
                return
            if start:
                _junk(out, bytes(buf[:start]))
                del buf[:start]
            if len(buf) < 5:
                return
            if buf[1] not in TYPES:         # BB in noise: not a frame start
                _junk(out, bytes(buf[:1]))
                del buf[:1]
                continue
            length = buf[3] << 8 | buf[4]
            if length > self.max_params:
                cut = _next_head(buf, len(buf))
                out.append(OversizeFrame(
                    f"header announces {length} parameter bytes, more than the "
                    f"{self.max_params} a frame may carry", bytes(buf[:cut])))
                del buf[:cut]
                continue
            total = OVERHEAD + length
            if len(buf) < total:
                return
            if buf[total - 1] != END:
                cut = _next_head(buf, total)
                out.append(TruncatedFrame(
                    f"frame cut short: header announces {total} bytes but no 7e ends them",
                    bytes(buf[:cut])))
                del buf[:cut]
                continue
            raw = bytes(buf[:total])
            del buf[:total]
            expected = checksum(raw[1:-2])
            if raw[-2] != expected:
                out.append(ChecksumError(
                    f"checksum {raw[-2]:02x} should be {expected:02x}", raw))
                continue
            out.append(Frame(raw[1], raw[2], raw[5:-2], raw))


def _next_head(buf: bytearray, default: int) -> int:
    """Where the next possible frame starts after the one at 0 (resynchronisation point)."""
    nxt = buf.find(HEAD, 1)
    return nxt if nxt > 0 else default


def _junk(out: list[Framed], data: bytes) -> None:
    """Report bytes outside any frame, merged with garbage reported just before."""
    if not data:
        return
    if out and type(out[-1]) is GarbageError:
        data = out.pop().raw + data
    out.append(GarbageError(f"{len(data)} bytes outside any frame", data))

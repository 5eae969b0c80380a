"""Framers: incremental splitters from a byte stream into frames, one per protocol family.

A framer is fed whatever the port returned (half a frame, three frames and some noise) and
hands back complete frames as `bytes` and runs of bytes that belong to no frame as
`GarbageError` values. It resynchronises on the next frame start, so a partial frame after
plugging in, or noise on the line, costs at most the frame it hit. Framers know boundaries
only; checksums and content are checked by the protocol's `parse`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from .errors import GarbageError

Framed = bytes | GarbageError

STX, ETX, CR = 0x02, 0x03, 0x0D


class Framer:
    """Base: a buffer, and a helper that merges adjacent garbage into one error."""

    #: Longest buffered run without a frame end before it is given up as garbage.
    max_len = 256

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Framed]:
        """Add `data`; return the frames and garbage that are now complete, in order."""
        self._buf += data
        out: list[Framed] = []
        self._split(out)
        return out

    def flush(self) -> list[Framed]:
        """Give up what is buffered (port closed or reopened): a partial frame is garbage."""
        out: list[Framed] = []
        if self._buf:
            self._junk(out, bytes(self._buf), "partial frame discarded")
            self._buf.clear()
        return out

    def _split(self, out: list[Framed]) -> None:
        raise NotImplementedError

    @staticmethod
    def _junk(out: list[Framed], data: bytes, why: str = "bytes outside any frame") -> None:
        if not data:
            return
        if out and isinstance(out[-1], GarbageError):
            data = out.pop().raw + data
            why = "bytes outside any frame"
        out.append(GarbageError(f"{len(data)} {why}", data))


class StxEtxFramer(Framer):
    """Frames from STX (0x02) to ETX (0x03) whose length is one of `lengths`.

    For protocols whose frame body is printable ASCII (XK3190-A9), so STX and ETX cannot occur
    inside a frame: an STX before the expected ETX starts a new frame.
    """

    def __init__(self, lengths: Collection[int]):
        super().__init__()
        self.lengths = frozenset(lengths)
        self.max_len = max(self.lengths)

    def _split(self, out: list[Framed]) -> None:
        buf = self._buf
        while buf:
            start = buf.find(STX)
            if start < 0:
                self._junk(out, bytes(buf))
                buf.clear()
                return
            if start:
                self._junk(out, bytes(buf[:start]))
                del buf[:start]
            end = buf.find(ETX, 1)
            restart = buf.find(STX, 1)
            if restart >= 0 and (end < 0 or restart < end):
                self._junk(out, bytes(buf[:restart]), "bytes of an incomplete frame")
                del buf[:restart]
                continue
            if end < 0:
                if len(buf) > self.max_len:
                    self._junk(out, bytes(buf), "bytes without a frame end")
                    buf.clear()
                return
            frame = bytes(buf[:end + 1])
            del buf[:end + 1]
            if len(frame) in self.lengths:
                out.append(frame)
            else:
                self._junk(out, frame, "bytes in an STX..ETX frame of unexpected length")


class LineFramer(Framer):
    """Frames that end with `terminator` (CR LF).

    `find_start(line)` says where the frame begins inside a line (bytes before it are
    garbage), or -1 when the line holds no frame at all. Fixed-length formats take the frame
    as the last N bytes before the terminator, which resynchronises after noise on the line.
    """

    def __init__(self, find_start: Callable[[bytes], int] | None = None, *,
                 terminator: bytes = b"\r\n", optional_lf: bool = False, max_len: int = 256):
        super().__init__()
        self.find_start = find_start
        self.terminator = terminator
        self.optional_lf = optional_lf
        self.max_len = max_len

    def _split(self, out: list[Framed]) -> None:
        """With `optional_lf` the terminator is CR, and an LF right after it belongs to the
        line it ends. A CR at the end of what arrived waits for the next byte to tell, so
        that a frame is the same bytes however the stream was split (a CR-only line is
        handed on when the next line starts)."""
        buf, term = self._buf, self.terminator
        while True:
            end = buf.find(term)
            if end < 0:
                if len(buf) > self.max_len:
                    # Keep a possible first half of the terminator for the next feed.
                    keep = len(term) - 1
                    self._junk(out, bytes(buf[:-keep] if keep else buf),
                               "bytes without a line end")
                    del buf[:len(buf) - keep]
                return
            stop = end + len(term)
            if self.optional_lf:
                if stop == len(buf):
                    return
                if buf[stop] == 0x0A:
                    stop += 1
            line = bytes(buf[:stop])
            del buf[:stop]
            start = self.find_start(line) if self.find_start else 0
            if start < 0:
                self._junk(out, line, "bytes in a line that holds no frame")
                continue
            self._junk(out, line[:start])
            out.append(line[start:])


def fixed_suffix(length: int, check: Callable[[bytes], bool] = lambda frame: True
                 ) -> Callable[[bytes], int]:
    """`find_start` for fixed-length lines: the frame is the last `length` bytes of the line,
    if `check(frame)` agrees."""

    def find_start(line: bytes) -> int:
        start = len(line) - length
        return start if start >= 0 and check(line[start:]) else -1

    return find_start

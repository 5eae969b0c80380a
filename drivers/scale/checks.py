"""Check characters used by the scale protocols, as pure functions over bytes."""

from __future__ import annotations

from functools import reduce


def xor(data: bytes) -> int:
    """XOR of all bytes (Yaohua XK3190 frames)."""
    return reduce(lambda acc, b: acc ^ b, data, 0)


def nibbles(value: int) -> bytes:
    """A byte as two ASCII characters, high nibble first, the Yaohua way: a nibble <= 9 is sent
    as value + 0x30 ('0'-'9'), above 9 as value + 0x37 ('A'-'F').

    The result equals upper-case hex, which is why `0x1B` is sent as `31 42` ("1B").
    """
    return bytes(n + (0x30 if n <= 9 else 0x37) for n in (value >> 4, value & 0x0F))


def parse_nibbles(pair: bytes) -> int | None:
    """The byte sent as two Yaohua check characters, or None if they are not '0'-'9'/'A'-'F'."""
    if len(pair) != 2:
        return None
    value = 0
    for c in pair:
        if 0x30 <= c <= 0x39:
            n = c - 0x30
        elif 0x41 <= c <= 0x46:
            n = c - 0x37
        else:
            return None
        value = value << 4 | n
    return value


def toledo_checksum(data: bytes) -> int:
    """Toledo continuous output: the two's complement of the low seven bits of the sum of all
    characters before the checksum, STX and CR included; so (sum + checksum) & 0x7F == 0."""
    return -sum(data) & 0x7F

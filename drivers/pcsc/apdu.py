"""Command and response APDUs as bytes, parsed into typed values at the edge (ISO 7816-4).

Pure functions, no I/O: the transport uses them to answer 61XX with GET RESPONSE and 6CXX with
the same command and the right Le. Only short APDUs (Lc and Le of one byte) are handled: the
farmer cards and M1 readers this agent talks to use nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ApduError


@dataclass(frozen=True)
class Response:
    """A response APDU: the data and the two status bytes. For a chained answer (61XX), `data`
    is everything the card sent, in order, and the status word is the last one."""

    data: bytes
    sw1: int
    sw2: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> Response:
        if len(raw) < 2:
            raise ApduError(f"a response APDU has at least the two status bytes, got {raw.hex()!r}")
        return cls(bytes(raw[:-2]), raw[-2], raw[-1])

    @property
    def sw(self) -> int:
        return (self.sw1 << 8) | self.sw2

    @property
    def ok(self) -> bool:
        return self.sw == 0x9000

    def __bytes__(self) -> bytes:
        return self.data + bytes((self.sw1, self.sw2))


def check_command(apdu: bytes) -> bytes:
    """`apdu` as bytes if it is a well-formed short command APDU (cases 1 to 4), else ApduError."""
    apdu = bytes(apdu)
    if len(apdu) < 4:
        raise ApduError(f"a command APDU has at least CLA INS P1 P2, got {apdu.hex()!r}")
    if len(apdu) > 5:
        lc = apdu[4]
        if lc == 0:
            raise ApduError(f"extended-length APDUs are not supported: {header(apdu).hex(' ')}")
        if len(apdu) not in (5 + lc, 6 + lc):
            raise ApduError(f"Lc {lc} does not match the {len(apdu) - 5} bytes after it "
                            f"in command {header(apdu).hex(' ')}")
    return apdu


def header(apdu: bytes) -> bytes:
    """CLA INS P1 P2: what may be shown in logs and errors (the data may be a PIN)."""
    return bytes(apdu[:4])


def with_le(apdu: bytes, le: int) -> bytes:
    """The same command asking for `le` bytes (0 means 256): what a card's 6CXX asks for."""
    apdu = check_command(apdu)
    if not 0 <= le <= 0xFF:
        raise ApduError(f"Le {le} does not fit a short APDU")
    if len(apdu) == 4:                          # case 1: append Le
        return apdu + bytes((le,))
    if len(apdu) == 5:                          # case 2: replace Le
        return apdu[:4] + bytes((le,))
    lc = apdu[4]
    return apdu[:5 + lc] + bytes((le,))         # case 3 gains Le, case 4 has it replaced


def get_response(cla: int, le: int) -> bytes:
    """GET RESPONSE for `le` bytes (0 means 256) on the logical channel of `cla`.

    An interindustry CLA keeps its channel bits; a proprietary CLA (bit 8 set, as on many
    Chinese CPU cards) gets 00, which those cards expect for GET RESPONSE.
    """
    channel = cla & 0x03 if cla < 0x80 else 0x00
    return bytes((channel, 0xC0, 0x00, 0x00, le & 0xFF))

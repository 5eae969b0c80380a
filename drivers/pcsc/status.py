"""Status words to typed errors: the statuses a card application has to tell apart.

61XX and 6CXX never get here: the transport resolves them. Any other status word but 9000 is
a `CardStatusError`; the ones an application acts on have their own subclass.
"""

from __future__ import annotations

from .apdu import Response, header
from .errors import (
    AuthenticationBlocked,
    CardStatusError,
    FileNotFound,
    RecordNotFound,
    SecurityStatusNotSatisfied,
    VerificationFailed,
)

_BY_SW: dict[int, type[CardStatusError]] = {
    0x6982: SecurityStatusNotSatisfied,
    0x6983: AuthenticationBlocked,
    0x6A82: FileNotFound,
    0x6A83: RecordNotFound,
}


def error_for(command: bytes, response: Response) -> CardStatusError | None:
    """The error a response stands for, or None for 9000."""
    if response.ok:
        return None
    if response.sw1 == 0x63 and response.sw2 & 0xF0 == 0xC0:
        return VerificationFailed(header(command), response)
    return _BY_SW.get(response.sw, CardStatusError)(header(command), response)


def raise_for_status(command: bytes, response: Response) -> Response:
    """`response` if it is 9000, else its typed error raised."""
    error = error_for(command, response)
    if error is not None:
        raise error
    return response

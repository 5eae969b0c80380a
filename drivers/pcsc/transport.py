"""APDUs to one card over a pyscard connection, with the ISO 7816 housekeeping done.

A card application wants one answer per command. The card may instead say 61XX ("XX more
bytes: ask with GET RESPONSE", T=0 cards and long answers) or 6CXX ("wrong Le, send it again
with Le XX"); `ApduTransport.transmit` resolves both and returns the whole answer as one
`Response`, or raises the status word's typed error.

A card pulled out mid-command rarely says so at once: pcscd first reports a failed
transaction or an empty answer, and marks the card removed only at its next poll of the
reader. So a failed exchange is followed by a short look at the connection's state
(`removal_grace_s`), and a card that turns out to be gone is reported as `CardRemoved`.

APDU data (PINs, keys) is never logged; CLA INS P1 P2 and the status word are, at debug level.
"""

from __future__ import annotations

import logging
import time

from . import backend
from .apdu import Response, check_command, get_response, header, with_le
from .errors import CardCommunicationError, CardRemoved, PcscError
from .readers import find_reader
from .status import raise_for_status

log = logging.getLogger(__name__)

#: A card answering 61XX forever would otherwise hang the station.
MAX_RESPONSE_ROUNDS = 64


class ApduTransport:
    """Commands to the card behind a connected pyscard `CardConnection`.

    `ApduTransport.open("ACR122")` selects the reader by name and connects; the constructor
    takes a connection made elsewhere (decorated for exclusivity or logging, say). Close it
    (or use `with`) to free the reader for the next card. One thread at a time: a command and
    its GET RESPONSE rounds must not interleave with another command.
    """

    def __init__(self, connection, *, reader: str | None = None,
                 removal_grace_s: float = 1.0):
        self._connection = connection
        self.reader = reader if reader is not None else str(connection.getReader())
        self.removal_grace_s = removal_grace_s
        self.atr = backend.atr(connection, self.reader)
        self._closed = False

    @classmethod
    def open(cls, reader: str, **kwargs) -> ApduTransport:
        """Connect to the card in the reader whose name contains `reader`.

        Raises ReaderNotFound/AmbiguousReader, NoCard or ReaderServiceUnavailable."""
        name = find_reader(reader)
        connection = backend.connect(name)
        try:
            return cls(connection, reader=name, **kwargs)
        except PcscError:
            backend.release(connection)
            raise

    def transmit(self, apdu: bytes, *, check: bool = True) -> Response:
        """Send one command APDU; return the card's complete answer.

        61XX is followed by GET RESPONSE until the card is done (the data concatenated), 6CXX
        by the same command with Le XX. With `check` (the default) any final status but 9000
        raises its `CardStatusError` subclass; without it the response is returned as is.
        Raises CardRemoved, ReaderServiceUnavailable or CardCommunicationError when the
        exchange itself fails.
        """
        command = check_command(apdu)
        if self._closed:
            raise CardCommunicationError(f"the connection to {self.reader!r} is closed")
        response = self._send(command)
        data = bytearray(response.data)
        rounds = 0
        while response.sw1 == 0x61:
            rounds += 1
            if rounds > MAX_RESPONSE_ROUNDS:
                raise CardCommunicationError(
                    f"the card in {self.reader!r} kept answering 61XX to "
                    f"{header(command).hex(' ').upper()} ({rounds} rounds); remove and reinsert it")
            response = self._send(get_response(command[0], response.sw2))
            data += response.data
        response = Response(bytes(data), response.sw1, response.sw2)
        if check:
            raise_for_status(command, response)
        return response

    def _send(self, command: bytes) -> Response:
        """One command, sent again once with the Le a 6CXX answer asks for."""
        response = self._exchange(command)
        if response.sw1 == 0x6C:
            response = self._exchange(with_le(command, response.sw2))
        return response

    def _exchange(self, command: bytes) -> Response:
        try:
            raw = backend.transmit(self._connection, command, self.reader)
        except CardCommunicationError as exc:
            self._raise_if_removed(exc)
            raise
        response = Response.from_bytes(raw)
        log.debug("pcsc %s: %s -> %04X (%d bytes)", self.reader,
                  header(command).hex(" ").upper(), response.sw, len(response.data))
        return response

    def _raise_if_removed(self, cause: CardCommunicationError) -> None:
        """Raise CardRemoved from `cause` if pcscd reports the card gone within the grace."""
        deadline = time.monotonic() + self.removal_grace_s
        while True:
            if backend.card_gone(self._connection, self.reader):
                raise CardRemoved(f"the card in {self.reader!r} was removed during a command; "
                                  "insert it again and start over") from cause
            if time.monotonic() >= deadline:
                return
            time.sleep(0.02)

    def card_present(self) -> bool:
        """Whether this connection's card is still in the reader (not removed or swapped):
        pcscd invalidates a handle whose card was taken out, even if it came straight back."""
        return not self._closed and not backend.card_gone(self._connection, self.reader)

    def reconnect(self) -> None:
        """Reset the card and keep the connection (SCardReconnect): the card forgets its
        selection and authentication, as after being taken out and put back."""
        if self._closed:
            raise CardCommunicationError(f"the connection to {self.reader!r} is closed")
        try:
            backend.reconnect(self._connection, self.reader)
        except CardCommunicationError as exc:
            self._raise_if_removed(exc)
            raise
        self.atr = backend.atr(self._connection, self.reader)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            backend.release(self._connection)

    def __enter__(self) -> ApduTransport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

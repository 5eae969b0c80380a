"""A virtual contact card written in Python, plugged into a vpcd reader of the tests' pcscd.

Only the card is simulated: pcscd, the vpcd reader driver, libpcsclite and pyscard are the
real ones, so the code under test sees ATRs, T=1, status words and a card pulled out
mid-command exactly as it would from a reader on a Pi.

The card is a TCP client of the reader's port. Every message is a 2-byte big-endian length
and a payload; a 1-byte payload is a control code (00 power off, 01 power on, 02 reset: no
reply; 04 get ATR: reply with the ATR); a longer one is a command APDU, answered with the
response APDU. Closing the socket is pulling the card out.

    class Purse(VirtualCard):
        def respond(self, apdu):
            return bytes.fromhex("9000")

    card = Purse(reader).insert()      # returns once pcscd reports the card PRESENT
    ...
    card.remove()                      # returns once pcscd reports the reader EMPTY

pyscard is imported inside `wait_reader_state` only: see tests/support/pcsc.py on why nothing
may import it before the plugin has set PCSCLITE_CSOCK_NAME.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

POWER_OFF, POWER_ON, RESET, GET_ATR = 0x00, 0x01, 0x02, 0x04
SW_OK = b"\x90\x00"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"
SW_NO_PRECISE_DIAGNOSIS = b"\x6f\x00"
# ISO 7816-4 status words the virtual cards answer with.
SW_WRONG_LENGTH = b"\x67\x00"
SW_SECURITY = b"\x69\x82"          # security status not satisfied (also: nothing selected)
SW_BLOCKED = b"\x69\x83"
SW_CONDITIONS = b"\x69\x85"
SW_NOT_ALLOWED = b"\x69\x86"
SW_FILE_NOT_FOUND = b"\x6a\x82"
SW_RECORD_NOT_FOUND = b"\x6a\x83"
SW_WRONG_P1P2 = b"\x6a\x86"
SW_KEY_NOT_FOUND = b"\x6a\x88"
SW_INS = SW_INS_NOT_SUPPORTED
SW_CLA = b"\x6e\x00"


def make_atr(historical: bytes = b"cocoon-vcard") -> bytes:
    """A T=1-only ATR with these historical bytes (at most 15) and its check byte."""
    if len(historical) > 15:
        raise ValueError("an ATR carries at most 15 historical bytes")
    body = bytes((0x80 | len(historical), 0x01)) + historical   # T0 (TD1 follows), TD1: T=1
    check = 0
    for byte in body:
        check ^= byte
    return b"\x3b" + body + bytes((check,))


@dataclass(frozen=True)
class VirtualReader:
    """A vpcd reader slot: the name pcscd lists it under and the TCP port a card plugs into."""

    name: str
    port: int
    host: str = "127.0.0.1"


class VirtualCard:
    """A card that answers every APDU through `respond(apdu) -> response`.

    Override `respond` in a subclass or pass `respond=`; the default answers 6D00 (instruction
    not supported). Received APDUs are kept in `commands`, exceptions raised by `respond` in
    `errors` (the card answers 6F00 then). `remove()` works from inside `respond` too: the
    command then never gets an answer, as when a farmer pulls the card mid-transaction.
    """

    atr: bytes = make_atr()

    def __init__(self, reader: VirtualReader, *, atr: bytes | None = None,
                 respond: Callable[[bytes], bytes] | None = None):
        self.reader = reader
        if atr is not None:
            self.atr = atr
        if respond is not None:
            self.respond = respond
        self.commands: list[bytes] = []
        self.errors: list[BaseException] = []
        self.powered = False
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def respond(self, apdu: bytes) -> bytes:
        return SW_INS_NOT_SUPPORTED

    @property
    def inserted(self) -> bool:
        return self._sock is not None

    def insert(self, *, timeout: float = 5.0) -> VirtualCard:
        """Plug the card into its reader; return once pcscd reports it PRESENT with our ATR."""
        if self.inserted:
            raise RuntimeError(f"card already inserted in {self.reader.name!r}")
        try:
            sock = socket.create_connection((self.reader.host, self.reader.port), timeout=timeout)
        except OSError as exc:
            raise RuntimeError(f"cannot plug a card into {self.reader.name!r} at port "
                                 f"{self.reader.port}: {exc} (is the tests' pcscd running?)"
                                 ) from exc
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, args=(sock,),
                                        name=f"vcard-{self.reader.port}", daemon=True)
        self._thread.start()
        wait_reader_state(self.reader.name, present=True, atr=self.atr, timeout=timeout)
        return self

    def remove(self, *, wait: bool = True, timeout: float = 5.0) -> None:
        """Pull the card out; with `wait`, return once pcscd reports the reader EMPTY."""
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass            # the reader side closed first (pcscd stopped)
            sock.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if wait:
            wait_reader_state(self.reader.name, present=False, timeout=timeout)

    def __enter__(self) -> VirtualCard:
        return self if self.inserted else self.insert()

    def __exit__(self, *exc) -> None:
        if self.inserted:
            self.remove()

    # -- the reader's side of the socket, in the card's thread -----------------------------

    def _serve(self, sock: socket.socket) -> None:
        try:
            while True:
                payload = _read_message(sock)
                if payload is None:
                    break
                reply = self._handle(payload)
                if self._sock is not sock:
                    break                   # removed while handling the command
                if reply is not None:
                    sock.sendall(struct.pack(">H", len(reply)) + reply)
        except OSError as exc:
            if self._sock is sock:
                log.debug("virtual card on %s: %s", self.reader.name, exc)
        finally:
            with self._lock:
                if self._sock is sock:      # the reader hung up: pcscd stopped
                    self._sock = None
                    sock.close()

    def _handle(self, payload: bytes) -> bytes | None:
        if len(payload) == 1:
            code = payload[0]
            if code == GET_ATR:
                return self.atr
            if code in (POWER_ON, RESET):
                self.powered = True
            elif code == POWER_OFF:
                self.powered = False
            return None
        self.commands.append(payload)
        try:
            return bytes(self.respond(payload))
        except Exception as exc:
            self.errors.append(exc)
            log.warning("virtual card on %s: respond() raised %r", self.reader.name, exc)
            return SW_NO_PRECISE_DIAGNOSIS


def _read_exact(sock: socket.socket, size: int) -> bytes | None:
    """`size` bytes, or None at end of stream.

    TCP_QUICKACK before every recv: vpcd sends the length and the payload in two send()
    calls, and without an immediate ACK the second one waits for the delayed-ACK timer, about
    44 ms per APDU. Linux clears the flag again by itself, hence every time.
    """
    data = b""
    while len(data) < size:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _read_message(sock: socket.socket) -> bytes | None:
    head = _read_exact(sock, 2)
    if head is None:
        return None
    (length,) = struct.unpack(">H", head)
    return _read_exact(sock, length)


def wait_reader_state(reader: str, *, present: bool, atr: bytes | None = None,
                      timeout: float = 5.0) -> None:
    """Block until pcscd reports `reader` PRESENT (with `atr`, if given) or EMPTY.

    Without this, the next step of a test could still see the previous card: pcscd notices
    a virtual card only at its next poll of the reader (0.1-0.6 s).
    """
    from smartcard import scard

    code, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if code != scard.SCARD_S_SUCCESS:
        raise RuntimeError(f"no PC/SC context: {scard.SCardGetErrorMessage(code)}")
    wanted = "PRESENT" if present else "EMPTY"
    deadline = time.monotonic() + timeout
    state, seen = scard.SCARD_STATE_UNAWARE, b""
    try:
        while True:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            code, result = scard.SCardGetStatusChange(context, remaining_ms, [(reader, state)])
            if code == scard.SCARD_S_SUCCESS:
                _, event, seen = result[0]
                seen = bytes(seen)
                if present and event & scard.SCARD_STATE_PRESENT and atr in (None, seen):
                    return
                if not present and event & scard.SCARD_STATE_EMPTY:
                    return
                state = event & ~scard.SCARD_STATE_CHANGED
            elif code & 0xFFFFFFFF != scard.SCARD_E_TIMEOUT & 0xFFFFFFFF:
                raise RuntimeError(f"waiting for {reader!r} to be {wanted}: "
                                     f"{scard.SCardGetErrorMessage(code)}")
            if time.monotonic() >= deadline:
                raise RuntimeError(f"timed out after {timeout:.1f} s waiting for {reader!r} "
                                     f"to be {wanted} (state 0x{state:x}, atr {seen.hex()})")
    finally:
        scard.SCardReleaseContext(context)

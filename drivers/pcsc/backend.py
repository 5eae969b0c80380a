"""The one module that imports pyscard: its calls and exceptions, turned into ours.

pyscard reports failures three ways: `SmartcardException` subclasses carrying an `hresult`
(signed or unsigned, sometimes -1), plain return codes from `smartcard.scard`, and, for a card
pulled out mid-command, a "valid" transmission with an empty answer. Everything above this
module sees bytes, PC/SC state bits as ints and `drivers.pcsc.errors` types only.

pcscd must be reachable through libpcsclite, which picks its socket (`PCSCLITE_CSOCK_NAME`,
default /run/pcscd/pcscd.comm) once per process, at the first PC/SC call.
"""

from __future__ import annotations

import logging

from smartcard import scard
from smartcard.Exceptions import SmartcardException
from smartcard.pcsc.PCSCReader import PCSCReader

from .errors import (
    CardCommunicationError,
    CardRemoved,
    NoCard,
    PcscError,
    ReaderNotFound,
    ReaderServiceUnavailable,
)

log = logging.getLogger(__name__)

#: The pseudo-reader whose state changes when a reader is added or removed (pcsc-lite and
#: Windows both know it).
PNP_NOTIFICATION = "\\\\?PnP?\\Notification"

STATE_UNAWARE = scard.SCARD_STATE_UNAWARE
STATE_CHANGED = scard.SCARD_STATE_CHANGED
STATE_UNKNOWN = scard.SCARD_STATE_UNKNOWN
STATE_UNAVAILABLE = scard.SCARD_STATE_UNAVAILABLE
STATE_EMPTY = scard.SCARD_STATE_EMPTY
STATE_PRESENT = scard.SCARD_STATE_PRESENT
STATE_MUTE = scard.SCARD_STATE_MUTE


def _u32(code: int) -> int:
    return code & 0xFFFFFFFF


SUCCESS = _u32(scard.SCARD_S_SUCCESS)
TIMEOUT = _u32(scard.SCARD_E_TIMEOUT)
CANCELLED = _u32(scard.SCARD_E_CANCELLED)
UNKNOWN_READER = _u32(scard.SCARD_E_UNKNOWN_READER)
NO_READERS = _u32(scard.SCARD_E_NO_READERS_AVAILABLE)

#: pcscd is gone: not started, stopped, or restarted under this context (a context outlives
#: nothing: after a restart it keeps answering NO_SERVICE, so a new one must be established).
SERVICE_DOWN = frozenset(_u32(c) for c in (
    scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED, scard.SCARD_F_COMM_ERROR))

#: The card or its reader is gone.
CARD_GONE = frozenset(_u32(c) for c in (
    scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD, scard.SCARD_E_READER_UNAVAILABLE,
    scard.SCARD_E_UNKNOWN_READER))


def hresult_of(exc: BaseException) -> int | None:
    """The PC/SC code a pyscard exception carries, unsigned, or None."""
    code = getattr(exc, "hresult", -1)
    return None if code in (-1, None) else _u32(code)


def describe(code: int | None) -> str:
    """'Service not available. (0x8010001D)' for messages and logs."""
    if code is None:
        return "no PC/SC code"
    return f"{scard.SCardGetErrorMessage(code).strip()} (0x{_u32(code):08X})"


def service_unavailable(code: int | None, action: str) -> ReaderServiceUnavailable:
    return ReaderServiceUnavailable(
        f"the PC/SC service pcscd is not available while {action}: {describe(code)}; check "
        "that it runs (systemctl status pcscd)")


def _translate(exc: SmartcardException, action: str, reader: str) -> PcscError:
    code = hresult_of(exc)
    if code in SERVICE_DOWN:
        return service_unavailable(code, action)
    if code in CARD_GONE:
        return CardRemoved(f"the card in {reader!r} was removed while {action} ({describe(code)})")
    reason = describe(code) if code is not None else str(exc)
    return CardCommunicationError(f"{action} on {reader!r} failed: {reason}", code)


class Context:
    """A PC/SC context (one conversation with pcscd), for listing readers and waiting for
    their states. Not shared between threads, except `cancel()`."""

    def __init__(self):
        code, handle = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        code = _u32(code)
        if code in SERVICE_DOWN:
            raise service_unavailable(code, "opening a PC/SC context")
        if code != SUCCESS:
            raise CardCommunicationError(f"cannot open a PC/SC context: {describe(code)}", code)
        self._handle = handle

    def list_readers(self) -> list[str]:
        code, names = scard.SCardListReaders(self._handle, [])
        code = _u32(code)
        if code == NO_READERS:
            return []
        if code in SERVICE_DOWN:
            raise service_unavailable(code, "listing readers")
        if code != SUCCESS:
            raise CardCommunicationError(f"cannot list readers: {describe(code)}", code)
        return list(names)

    def status_change(self, states: list[tuple[str, int]], timeout_s: float
                      ) -> tuple[int, list[tuple[str, int, bytes]]]:
        """SCardGetStatusChange: blocks until a state differs from the one given or `timeout_s`
        passes. Returns the PC/SC code (SUCCESS, TIMEOUT, CANCELLED, UNKNOWN_READER...) and
        (reader, event state, ATR) for each reader; raises only when the service is down."""
        code, result = scard.SCardGetStatusChange(self._handle, int(timeout_s * 1000), states)
        code = _u32(code)
        if code in SERVICE_DOWN:
            raise service_unavailable(code, "waiting for reader events")
        return code, [(name, event, bytes(atr)) for name, event, atr in result]

    def cancel(self) -> None:
        """Wake a `status_change` blocked in another thread (it returns CANCELLED)."""
        if self._handle is not None:
            scard.SCardCancel(self._handle)

    def close(self) -> None:
        if self._handle is not None:
            scard.SCardReleaseContext(self._handle)   # fails harmlessly if pcscd is gone
            self._handle = None

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def list_readers() -> list[str]:
    """The readers pcscd knows, in its order."""
    with Context() as context:
        return context.list_readers()


def connect(reader: str):
    """A connected pyscard `CardConnection` to the card in `reader` (T=0 or T=1, shared)."""
    try:
        connection = PCSCReader(reader).createConnection()
    except SmartcardException as exc:
        raise _translate(exc, "opening a PC/SC context", reader) from None
    try:
        connection.connect()
    except SmartcardException as exc:
        code = hresult_of(exc)
        release(connection)
        if code in (_u32(scard.SCARD_W_REMOVED_CARD), _u32(scard.SCARD_E_NO_SMARTCARD)):
            raise NoCard(f"no card in {reader!r}: insert the card and try again") from None
        if code in (UNKNOWN_READER, _u32(scard.SCARD_E_READER_UNAVAILABLE)):
            raise ReaderNotFound(f"reader {reader!r} is not connected ({describe(code)})",
                                 reader) from None
        raise _translate(exc, "connecting to the card", reader) from None
    return connection


def transmit(connection, apdu: bytes, reader: str) -> bytes:
    """One exchange: the command out, the whole response (data and status word) back.

    A card that vanished mid-command often shows up as a failed transaction or an empty
    answer rather than as "Card was removed"; both raise CardCommunicationError here, and
    `card_gone` tells the cases apart."""
    try:
        data, sw1, sw2 = connection.transmit(list(apdu))
    except SmartcardException as exc:
        if hresult_of(exc) == SUCCESS:     # pyscard: "Card returned no valid response"
            raise CardCommunicationError(
                f"the card in {reader!r} answered without a status word", SUCCESS) from None
        raise _translate(exc, "exchanging an APDU", reader) from None
    return bytes(data) + bytes((sw1, sw2))


def reconnect(connection, reader: str) -> None:
    """A warm reset of the card on its open connection (SCardReconnect, SCARD_RESET_CARD): a
    contactless reader selects the card afresh, as after a wrong key has halted it."""
    try:
        connection.reconnect(disposition=scard.SCARD_RESET_CARD)
    except SmartcardException as exc:
        raise _translate(exc, "resetting the card", reader) from None


def atr(connection, reader: str) -> bytes:
    try:
        return bytes(connection.getATR())
    except SmartcardException as exc:
        raise _translate(exc, "reading the ATR", reader) from None


def card_gone(connection, reader: str) -> bool:
    """Whether pcscd reports this connection's card as removed (or replaced by another)."""
    try:
        connection.getATR()       # SCardStatus on the connection's own handle
    except SmartcardException as exc:
        code = hresult_of(exc)
        if code in SERVICE_DOWN:
            raise service_unavailable(code, f"checking the card in {reader!r}") from None
        return code in CARD_GONE
    return False


def release(connection) -> None:
    """Disconnect and free the connection's context, whatever state pcscd and the card are in.

    Failures are expected here (card gone, pcscd restarted) and only logged. pyscard's own
    destructor would retry a failed release and print the exception to stderr; clearing the
    context handle after our attempt keeps that from happening.
    """
    try:
        connection.disconnect()
    except SmartcardException as exc:
        log.debug("pcsc: disconnect failed: %s", exc)
    component = getattr(connection, "component", connection)
    try:
        component.release()
    except SmartcardException as exc:
        log.debug("pcsc: releasing the context failed: %s", exc)
    finally:
        if getattr(component, "hcontext", None) is not None:
            component.hcontext = None

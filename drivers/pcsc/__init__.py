"""Smart cards over PC/SC: farmer and staff cards in the station's readers, through pcscd.

    from drivers.pcsc import ApduTransport, CardMonitor, CardInserted, CardRemoved

    def on_event(event):
        if isinstance(event, CardInserted):
            ...                              # event.reader, event.atr

    with CardMonitor(on_event):
        with ApduTransport.open("PICC") as card:     # any unique part of the reader's name
            card.transmit(bytes.fromhex("00A4040007A0000003330101"))    # Response or error

Layers, each usable alone: `apdu` (Response, Le and GET RESPONSE building; pure), `status`
(status words to typed errors; pure), `readers` (a reader by part of its name), `transport`
(ApduTransport: 61XX/6CXX handled, removal and pcscd failures typed), `events` and `monitor`
(CardMonitor: typed events from one thread that survives pcscd restarts). `backend` is the only
module that imports pyscard. The card application (farmer cards, M1 sectors) is built on top.
"""

from .apdu import Response
from .errors import (
    AmbiguousReader,
    ApduError,
    AuthenticationBlocked,
    CardCommunicationError,
    CardRemoved,
    CardStatusError,
    FileNotFound,
    NoCard,
    PcscError,
    ReaderNotFound,
    ReaderServiceUnavailable,
    RecordNotFound,
    SecurityStatusNotSatisfied,
    VerificationFailed,
)
from .events import (
    CardInserted,
    CardWithdrawn,
    MonitorEvent,
    ReaderAdded,
    ReaderRemoved,
    ServiceLost,
    ServiceRestored,
)
from .monitor import CardMonitor
from .readers import find_reader, list_readers, select_reader
from .transport import ApduTransport

__all__ = [
    "AmbiguousReader", "ApduError", "ApduTransport", "AuthenticationBlocked",
    "CardCommunicationError", "CardInserted", "CardMonitor", "CardRemoved", "CardStatusError",
    "CardWithdrawn", "FileNotFound", "MonitorEvent", "NoCard", "PcscError", "ReaderAdded",
    "ReaderNotFound", "ReaderRemoved", "ReaderServiceUnavailable", "RecordNotFound", "Response",
    "SecurityStatusNotSatisfied", "ServiceLost", "ServiceRestored", "VerificationFailed",
    "find_reader", "list_readers", "select_reader",
]

"""Scales: weighing indicators on RS-232, read through pyserial URLs.

    from drivers.scale import ScaleReader, StabilityDetector, SalePolicy, check_sale

    detector = StabilityDetector(count=5, window_s=1.0)

    def on_event(event):
        if isinstance(event, Reading):
            verdict = detector.feed(event, time.monotonic())
            ready = check_sale(event, policy, stable=verdict.stable)

    with ScaleReader("/dev/ttyUSB0", "xk3190-a9", on_event):
        ...

Layers, each usable alone: protocol modules (`xk3190_a9`, `xk3190_a12`, `toledo`, `mtsics`,
`ad_ascii`: a framer and a pure `parse(frame)`), `Decoder` (bytes in, events out),
`StabilityDetector` and `frames_digest` (which frames made a stable weight), `check_sale`
(may this weight be sold), `ScaleReader` (the thread per port), `PollingReader` (asks an
indicator that speaks only when asked; `open_scale` picks one), `Simulator` (an indicator on a
port, for tests and demos). No floats anywhere: weights are Decimal, grams are int.
"""

from .command import Command
from .decoder import Decoder, Event
from .digest import frames_digest
from .errors import (
    ChecksumError,
    CommandError,
    CommandFailed,
    CommandTimeout,
    CommandUnsupported,
    FrameError,
    GarbageError,
    InexactWeight,
    MalformedFrame,
    NoWeight,
    PortError,
    ProtocolNotFound,
    ScaleError,
    UnitChanged,
    UnsupportedUnit,
    WeightError,
)
from .poller import PollingReader, open_scale
from .protocols import NAMES, Protocol, SerialSettings, get_protocol
from .reader import LinkEvent, LinkState, ReaderEvent, ScaleReader
from .reading import Reading, Reply, Unit, WeightKind
from .sale import (
    Readiness,
    Refusal,
    SalePolicy,
    SaleWeights,
    TareSource,
    check_sale,
    sale_weights,
)
from .stability import Stability, StabilityDetector

__all__ = [
    "NAMES", "ChecksumError", "Command", "CommandError", "CommandFailed", "CommandTimeout",
    "CommandUnsupported", "Decoder", "Event", "FrameError", "GarbageError", "InexactWeight",
    "LinkEvent", "LinkState", "MalformedFrame", "NoWeight", "PollingReader", "PortError",
    "Protocol", "ProtocolNotFound", "Readiness", "ReaderEvent", "Reading", "Refusal", "Reply",
    "SalePolicy", "SaleWeights", "ScaleError", "ScaleReader", "SerialSettings", "Stability",
    "StabilityDetector", "TareSource", "UnitChanged", "UnsupportedUnit", "Unit", "WeightError",
    "WeightKind", "check_sale", "frames_digest", "get_protocol", "open_scale", "sale_weights",
]

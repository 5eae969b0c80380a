"""A protocol's framer and parser joined into one stream decoder: bytes in, events out.

Pure: no I/O and no clock, so tests can feed it any split of any byte stream. Every rejected
frame comes out as a `FrameError` value in order with the readings, never as a raised
exception, so one bad frame cannot stop a reader.
"""

from __future__ import annotations

from .errors import FrameError, UnitChanged
from .protocols import Protocol
from .reading import Reading, Reply

Event = Reading | Reply | FrameError


class Decoder:
    """Feeds bytes through `protocol`'s framer and parser; reports unit changes.

    A unit change is reported as `UnitChanged` (holding the reading) instead of the reading,
    because a weight must not be compared, or a stable window extended, across units.
    """

    def __init__(self, protocol: Protocol):
        self.protocol = protocol
        self._framer = protocol.framer()
        self._unit = None

    def feed(self, data: bytes) -> list[Event]:
        """Everything that `data` completes, in order."""
        return [self._decode(item) for item in self._framer.feed(data)]

    def reset(self) -> list[Event]:
        """Forget the partial frame and the last unit (the port was closed or reopened);
        return the partial frame as garbage, if there was one."""
        self._unit = None
        return list(self._framer.flush())

    def _decode(self, item: bytes | FrameError) -> Event:
        if isinstance(item, FrameError):
            return item
        try:
            decoded = self.protocol.parse(item)
        except FrameError as exc:
            return exc
        if isinstance(decoded, Reading) and decoded.unit is not None:
            previous, self._unit = self._unit, decoded.unit
            if previous is not None and previous != decoded.unit:
                return UnitChanged(previous.value, decoded.unit.value, decoded)
        return decoded

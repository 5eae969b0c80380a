"""Where a scale or a tag reader comes from: a device on the Pi's own port, or the field box.

A [scale] section or a [[warehouse.readers]] entry names a port and a protocol. Protocol
`coproc` means the device hangs off the field box's co-processor, reached over the box's UART
through the firmware bridge; any other protocol is a driver of drivers.scale or drivers.tags on
the port itself. `open_source` makes that choice, here and nowhere else: the drivers know
nothing of the box (drivers/ imports nothing from firmware_bridge/), and the station and the
warehouse ask for a source without knowing where it is.

The box's adapters have the drivers' interfaces (`ScaleReader`'s; `TagReader`), so what comes
back is used the same way whichever it is. Every adapter on one port shares one `Bridge`
(shared.py). firmware_bridge's own modules are imported only when a source is the box's, so a
station without one never loads them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from drivers.scale import open_scale
from drivers.tags import NATIVE_PROTOCOLS as NATIVE_TAG_PROTOCOLS
from drivers.tags import open_tag_reader

SCALE = "scale"
TAG_READER = "tag reader"
COPROC = "coproc"

#: Every tag reader protocol a configuration may name, with what its port is.
TAG_PROTOCOLS = {
    **NATIVE_TAG_PROTOCOLS,
    COPROC: "the field box's co-processor (firmware_bridge); port is its UART's pyserial URL",
}


def open_source(kind: str, port: str, protocol: str, **options):
    """The reader of a `kind` source (SCALE or TAG_READER) on `port` speaking `protocol`, not
    started: the field box's adapter for COPROC, else the driver for the protocol.

    Options, for a scale: `on_event` (required), `baudrate`, `name` (the box's load cell has
    no name of its own); for a tag reader: `name`, `antennas`, `silence_s` (for the box: how
    long without its heartbeat before it is offline). Other options go to the driver, or to the
    box's `Bridge`. Raises ValueError for an unknown kind, and what the driver raises for a
    protocol or port it cannot use."""
    openers = _OPENERS.get(kind)
    if openers is None:
        raise ValueError(f"unknown kind of source {kind!r}; known: {', '.join(_OPENERS)}")
    native, boxed = openers
    return boxed(port, **options) if protocol == COPROC else native(port, protocol, **options)


def _native_scale(port: str, protocol: str, *, on_event: Callable, **options):
    return open_scale(port, protocol, on_event, **options)


def _box_scale(port: str, *, on_event: Callable, baudrate: int | None = None,
               name: str | None = None, **bridge_options):
    from .readers import BridgeScaleReader
    from .shared import shared_bridge

    if baudrate:
        bridge_options["baudrate"] = baudrate
    return BridgeScaleReader(shared_bridge(port, **bridge_options), on_event)


def _box_tag_reader(port: str, *, name: str | None = None, antennas: Sequence[int] = (),
                    silence_s: float | None = None, **bridge_options):
    from .readers import BridgeTagReader
    from .shared import shared_bridge

    if silence_s is not None:       # the box is offline once its heartbeats stop
        bridge_options["heartbeat_timeout_s"] = silence_s
    return BridgeTagReader(shared_bridge(port, **bridge_options), name=name)


_OPENERS = {
    SCALE: (_native_scale, _box_scale),
    TAG_READER: (open_tag_reader, _box_tag_reader),
}

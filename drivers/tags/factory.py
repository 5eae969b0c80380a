"""Readers by protocol name, so configuration and the command line name a reader as
`(port URL, protocol)` and never import a driver they do not use (sllurp is loaded only for
LLRP readers).

Only readers on the Pi's own ports are opened here. A reader behind the field box's
co-processor is no driver of this package: the choice between a driver and the box is made
once, above the drivers (firmware_bridge.sources), so that drivers never import the bridge
(which imports them).
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ProtocolNotFound

#: The protocols `open_tag_reader` opens, with what their port is.
NATIVE_PROTOCOLS = {
    "bb7e": "serial UHF module speaking BB ... 7E frames; port is a pyserial URL",
    "llrp": "LLRP reader on the network; port is llrp://HOST[:5084]",
}

#: The drivers' protocols; a configuration may also name the field box's antennas, which
#: firmware_bridge.sources opens (its TAG_PROTOCOLS lists them all).
PROTOCOLS = NATIVE_PROTOCOLS


def open_tag_reader(port: str, protocol: str, *, name: str | None = None,
                    antennas: Sequence[int] = (), silence_s: float | None = None, **options):
    """A TagReader for `port` speaking `protocol` (see NATIVE_PROTOCOLS).

    `antennas`: for bb7e, the first is reported for notices that carry no antenna byte
    (default 1); for llrp, the antennas to use (default: all). `silence_s`: how long without
    any answer before the reader is reported offline. Other options go to the reader class.
    Raises ProtocolNotFound, or ValueError for a port or option the protocol cannot use.
    """
    if silence_s is not None:
        options["silence_s"] = silence_s
    if protocol == "bb7e":
        from .bb7e_reader import BB7EReader

        if antennas:
            options["antenna"] = antennas[0]
        return BB7EReader(port, name=name, **options)
    if protocol == "llrp":
        from .llrp_reader import LLRPReader

        return LLRPReader(port, name=name, antennas=tuple(antennas), **options)
    raise ProtocolNotFound(f"no tag reader driver for protocol {protocol!r}; drivers: "
                           f"{', '.join(NATIVE_PROTOCOLS)}")

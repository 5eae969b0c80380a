"""Readers by protocol name, so configuration and the command line name a reader as
`(port URL, protocol)` and never import a driver they do not use (sllurp is loaded only for
LLRP readers)."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ProtocolNotFound

PROTOCOLS = {
    "bb7e": "serial UHF module speaking BB ... 7E frames; port is a pyserial URL",
    "llrp": "LLRP reader on the network; port is llrp://HOST[:5084]",
    "coproc": "the field box's co-processor (firmware_bridge); port is its UART's pyserial URL",
}


def open_tag_reader(port: str, protocol: str, *, name: str | None = None,
                    antennas: Sequence[int] = (), silence_s: float | None = None, **options):
    """A TagReader for `port` speaking `protocol` (see PROTOCOLS).

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
    if protocol == "coproc":
        from firmware_bridge.readers import BridgeTagReader
        from firmware_bridge.shared import shared_bridge

        if "silence_s" in options:      # the box is offline once its heartbeats stop
            options["heartbeat_timeout_s"] = options.pop("silence_s")
        return BridgeTagReader(shared_bridge(port, **options), name=name)
    raise ProtocolNotFound(f"unknown tag reader protocol {protocol!r}; known: "
                           f"{', '.join(PROTOCOLS)}")

"""One Bridge per co-processor port, shared by every adapter in the process.

A field box has one UART and one link; the tag reader, the load cell, the climate sensor and
the inputs all reach it through the same `Bridge`. Adapters built from configuration ask for
the bridge of a port here, and the bridge starts with its first user and stops after its last
(`Bridge.acquire` / `release`).
"""

from __future__ import annotations

import threading

from .bridge import Bridge

_bridges: dict[str, Bridge] = {}
_lock = threading.Lock()


def shared_bridge(url: str, **options) -> Bridge:
    """The Bridge for `url` (created on first use with `options`; later options ignored)."""
    with _lock:
        bridge = _bridges.get(url)
        if bridge is None:
            bridge = _bridges[url] = Bridge(url, **options)
        return bridge

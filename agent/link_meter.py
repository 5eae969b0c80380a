"""What the link measures about publishing: PUBACK latency in fixed buckets, bytes published.

Pure counting, no metrics library: the link may run in its own process (agent.link_process),
which reports these counts to the agent as a snapshot, and the metrics endpoint turns the
snapshot into a Prometheus histogram. `MeteredHandler` wraps the link's handler (the uplink)
and measures what passes through it.
"""

from __future__ import annotations

import bisect
import threading
import time

#: Upper bounds of the latency buckets, in seconds (the last bucket is +Inf).
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class PublishMeter:
    """Publish times by message id, PUBACK latencies by bucket, bytes handed to the broker."""

    def __init__(self):
        self.published_bytes = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)  # per bucket, not cumulative
        self.latency_sum_s = 0.0
        self._sent: dict[int, float] = {}
        self._lock = threading.Lock()

    def published(self, mid: int, size: int) -> None:
        with self._lock:
            self._sent[mid] = time.monotonic()
            self.published_bytes += size

    def acknowledged(self, mid: int, reason_code: int) -> None:
        with self._lock:
            started = self._sent.pop(mid, None)
            if started is None or reason_code >= 0x80:
                return
            seconds = time.monotonic() - started
            self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
            self.latency_sum_s += seconds

    def forget(self) -> None:
        """The connection is gone: its message ids will never be acknowledged."""
        with self._lock:
            self._sent.clear()

    def snapshot(self) -> dict:
        with self._lock:
            return {"published_bytes": self.published_bytes,
                    "latency_counts": list(self.latency_counts),
                    "latency_sum_s": self.latency_sum_s}


class _MeteredLink:
    """The link as the wrapped handler sees it: publishing is timed and counted."""

    def __init__(self, link, meter: PublishMeter):
        self._link, self._meter = link, meter

    def publish(self, topic: str, payload: bytes, **kwargs) -> int:
        mid = self._link.publish(topic, payload, **kwargs)
        self._meter.published(mid, len(payload))
        return mid

    def __getattr__(self, name: str):
        return getattr(self._link, name)


class MeteredHandler:
    """A LinkHandler around another one (the uplink), measuring what passes through."""

    def __init__(self, inner, meter: PublishMeter):
        self.inner, self.meter = inner, meter
        self._proxy: _MeteredLink | None = None

    def _view(self, link) -> _MeteredLink:
        if self._proxy is None or self._proxy._link is not link:
            self._proxy = _MeteredLink(link, self.meter)
        return self._proxy

    def on_connected(self, link) -> None:
        self.meter.forget()
        self.inner.on_connected(self._view(link))

    def on_disconnected(self, link, reason: str) -> None:
        self.meter.forget()
        self.inner.on_disconnected(self._view(link), reason)

    def on_message(self, link, topic: str, payload: bytes, retain: bool) -> None:
        self.inner.on_message(self._view(link), topic, payload, retain)

    def on_puback(self, link, mid: int, reason_code: int) -> None:
        self.meter.acknowledged(mid, reason_code)
        self.inner.on_puback(self._view(link), mid, reason_code)

    def on_tick(self, link) -> None:
        self.inner.on_tick(self._view(link))

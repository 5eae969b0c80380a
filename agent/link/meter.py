"""What the link measures about publishing: PUBACK latency in fixed buckets, bytes published.

Pure counting, no metrics library and no lock: the uplink counts from the link's one thread,
and a snapshot read from another thread may at worst be one event behind. The link may run in
its own process (agent.link.process), which reports these counts to the agent as a snapshot,
and the metrics endpoint turns the snapshot into a Prometheus histogram.
"""

from __future__ import annotations

import bisect

#: Upper bounds of the latency buckets, in seconds (the last bucket is +Inf).
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class PublishMeter:
    """PUBACK latencies by bucket and bytes handed to the broker, as the uplink reports them."""

    def __init__(self):
        self.published_bytes = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)  # per bucket, not cumulative
        self.latency_sum_s = 0.0

    def published(self, size: int) -> None:
        self.published_bytes += size

    def acknowledged(self, seconds: float) -> None:
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.latency_sum_s += seconds

    def snapshot(self) -> dict:
        return {"published_bytes": self.published_bytes,
                "latency_counts": list(self.latency_counts),
                "latency_sum_s": self.latency_sum_s}

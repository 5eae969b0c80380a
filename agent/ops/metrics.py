"""Optional metrics in Prometheus text format, served over HTTP on localhost.

    [metrics]
    listen = "127.0.0.1:9464"

A part of the agent (see PARTS in agent/ops/service.py), built only when the section is present.
Most values are read from what the agent already keeps, at scrape time (outbox statistics, the
link's status), so a metric can never drift from the truth. Two are measured here, by wrapping
the MQTT link handler: the publish latency (an event handed to paho until the broker's PUBACK)
and the bytes published. Served with prometheus_client, on a loopback address only: the
metrics name the device's state, and a station's network is not the place to offer them.

    cocoon_outbox_depth                       events not yet acknowledged by the bank
    cocoon_outbox_oldest_pending_age_seconds  age of the oldest of them (0 when none)
    cocoon_outbox_used_bytes / _capacity_bytes
    cocoon_outbox_head_seq / _acked_seq
    cocoon_publish_latency_seconds            histogram, publish to PUBACK
    cocoon_mqtt_connected                     1 while the link is up
    cocoon_mqtt_reconnects_total              connections after the first
    cocoon_mqtt_published_bytes_total         event payload bytes handed to the broker
    cocoon_storage_written_bytes_total        bytes this process caused to be written to
                                              storage (/proc/self/io; the SD card's wear)
    cocoon_alerts_open{source="outbox"}       alert events not yet acknowledged by the bank
    cocoon_alerts_open{source="warehouse"}    open warehouse alerts (on a warehouse)
"""

import logging
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from agent.link.meter import LATENCY_BUCKETS_S
from agent.ops.metrics_config import MetricsConfig, parse_metrics  # noqa: F401 (its home)

log = logging.getLogger(__name__)

PROC_IO = Path("/proc/self/io")


def storage_written_bytes(path: Path = PROC_IO) -> int | None:
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "write_bytes":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def latency_histogram(counts: dict) -> HistogramMetricFamily:
    """The link's PUBACK latencies (agent.link.meter) as a Prometheus histogram."""
    cumulative, buckets = 0, []
    for bound, n in zip((*LATENCY_BUCKETS_S, float("inf")), counts["latency_counts"],
                           strict=True):
        cumulative += n
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
    return HistogramMetricFamily(
        "cocoon_publish_latency_seconds",
        "Time from handing an event to the MQTT client to the broker's PUBACK.",
        buckets=buckets, sum_value=counts["latency_sum_s"])


class AgentCollector(Collector):
    """Reads the agent's state at each scrape."""

    def __init__(self, agent):
        self.agent = agent

    def collect(self):
        stats = self.agent.outbox.stats()
        status = self.agent.link.status

        def gauge(name: str, doc: str, value) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        yield gauge("cocoon_outbox_depth", "Events not yet acknowledged by the bank.",
                    stats.counts["pending"] + stats.counts["sent"])
        yield gauge("cocoon_outbox_oldest_pending_age_seconds",
                    "Age of the oldest unacknowledged event (0 when none).",
                    stats.oldest_pending_age_s or 0)
        yield gauge("cocoon_outbox_used_bytes", "Bytes of unacknowledged events.",
                    stats.used_bytes)
        yield gauge("cocoon_outbox_capacity_bytes", "Configured outbox capacity.",
                    stats.capacity_bytes)
        yield gauge("cocoon_outbox_head_seq", "Last sequence number given out.",
                    stats.head_seq)
        yield gauge("cocoon_outbox_acked_seq", "Last sequence number the bank acknowledged.",
                    stats.acked_seq)
        yield gauge("cocoon_mqtt_connected", "1 while connected to the broker.",
                    int(status.connected))
        yield CounterMetricFamily("cocoon_mqtt_reconnects", "Connections after the first.",
                                  value=max(0, status.connects - 1))
        counts = self.agent.publish_counts()
        yield CounterMetricFamily("cocoon_mqtt_published_bytes",
                                  "Event payload bytes handed to the broker.",
                                  value=counts["published_bytes"])
        yield latency_histogram(counts)
        written = storage_written_bytes()
        if written is not None:
            yield CounterMetricFamily("cocoon_storage_written_bytes",
                                      "Bytes this process caused to be written to storage.",
                                      value=written)
        alerts = GaugeMetricFamily("cocoon_alerts_open", "Open alerts, by where they are kept.",
                                   labels=["source"])
        alerts.add_metric(["outbox"], stats.by_priority.get("alert", 0))
        for part in self.agent.parts:
            store = getattr(part, "store", None)
            if store is not None and hasattr(store, "open_alerts"):
                alerts.add_metric(["warehouse"], len(store.open_alerts()))
        yield alerts


class MetricsPart:
    """Serves the metrics while the agent runs (a part: start(stop), close())."""

    def __init__(self, agent):
        self.config: MetricsConfig = agent.config.section("metrics")
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(AgentCollector(agent))
        self._server = None
        self.port: int | None = None

    def start(self, stop: threading.Event) -> None:
        try:
            self._server, _ = start_http_server(self.config.port, self.config.host,
                                                registry=self.registry)
        except OSError as exc:
            # Metrics are optional: the agent goes on recording and forwarding without them.
            log.error("metrics: cannot listen on %s:%s: %s", self.config.host, self.config.port,
                      exc)
            return
        self.port = self._server.server_port
        log.info("metrics on http://%s:%s/metrics", self.config.host, self.port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

"""Optional metrics in Prometheus text format, served over HTTP on localhost.

    [metrics]
    listen = "127.0.0.1:9464"

A part of the agent (see PARTS in agent/service.py), built only when the section is present.
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

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .config import Section
from .errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9464"
PROC_IO = Path("/proc/self/io")


@dataclass(frozen=True)
class MetricsConfig:
    host: str
    port: int       # 0: any free port (tests)


def parse_metrics(path: Path, table) -> MetricsConfig:
    """The [metrics] section: `listen` as HOST:PORT on a loopback address."""
    section = Section(path, "metrics", table)
    listen = section.str("listen", DEFAULT_LISTEN)
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    expected = 'HOST:PORT on a loopback address, e.g. "127.0.0.1:9464"'
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{path}: [metrics] listen: expected {expected}, got {listen!r}")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"{path}: [metrics] listen: metrics are served on localhost only; "
                          f"expected {expected}, got {listen!r}")
    return MetricsConfig(host, int(port))


class Meter:
    """What the metered link measured: publish times by message id, bytes published."""

    def __init__(self, registry: CollectorRegistry):
        self.latency = Histogram(
            "cocoon_publish_latency_seconds", "Time from handing an event to the MQTT client "
            "to the broker's PUBACK.", registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.published_bytes = 0
        self._sent: dict[int, float] = {}
        self._lock = threading.Lock()

    def published(self, mid: int, size: int) -> None:
        with self._lock:
            self._sent[mid] = time.monotonic()
            self.published_bytes += size

    def acknowledged(self, mid: int, reason_code: int) -> None:
        with self._lock:
            started = self._sent.pop(mid, None)
        if started is not None and reason_code < 0x80:
            self.latency.observe(time.monotonic() - started)

    def forget(self) -> None:
        """The connection is gone: its message ids will never be acknowledged."""
        with self._lock:
            self._sent.clear()


class _MeteredLink:
    """The link as the wrapped handler sees it: publishing is timed and counted."""

    def __init__(self, link, meter: Meter):
        self._link, self._meter = link, meter

    def publish(self, topic: str, payload: bytes, **kwargs) -> int:
        mid = self._link.publish(topic, payload, **kwargs)
        self._meter.published(mid, len(payload))
        return mid

    def __getattr__(self, name: str):
        return getattr(self._link, name)


class MeteredHandler:
    """A LinkHandler around another one (the uplink), measuring what passes through."""

    def __init__(self, inner, meter: Meter):
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


def storage_written_bytes(path: Path = PROC_IO) -> int | None:
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "write_bytes":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


class AgentCollector(Collector):
    """Reads the agent's state at each scrape."""

    def __init__(self, agent, meter: Meter):
        self.agent, self.meter = agent, meter

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
        yield CounterMetricFamily("cocoon_mqtt_published_bytes",
                                  "Event payload bytes handed to the broker.",
                                  value=self.meter.published_bytes)
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
        self.meter = Meter(self.registry)
        agent.link.handler = MeteredHandler(agent.link.handler, self.meter)
        self.registry.register(AgentCollector(agent, self.meter))
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

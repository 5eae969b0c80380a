"""[metrics]: the running agent's endpoint on localhost, scraped over HTTP in Prometheus text
format, through the real broker and ingest."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.errors import ConfigError
from agent.ops.metrics import MetricsPart, parse_metrics
from tests.support.running import add_device
from tests.support.waiting import wait_for


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return values


def test_the_section_accepts_loopback_addresses_only():
    path = Path("agent.toml")
    assert parse_metrics(path, {}).port == 9464
    assert parse_metrics(path, {"listen": "[::1]:9000"}).host == "::1"
    assert parse_metrics(path, {"listen": "localhost:0"}).port == 0
    with pytest.raises(ConfigError, match="localhost only"):
        parse_metrics(path, {"listen": "0.0.0.0:9464"})
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_metrics(path, {"listen": "9464"})


def test_storage_written_grows_with_appends(site, services):
    """Each money event is committed with an fsync, so the bytes this process wrote to
    storage must grow across appends."""
    from agent.ops.metrics import storage_written_bytes

    if storage_written_bytes() is None:
        pytest.skip("/proc/self/io reports no write_bytes here (no per-process I/O "
                    "accounting), so the agent exports no storage counter")
    config = add_device(site, "station-42", metrics={"listen": "127.0.0.1:0"})
    agent = services.agent(config)
    (part,) = [p for p in agent.agent.parts if isinstance(p, MetricsPart)]
    wait_for(lambda: part.port is not None, 10, what="the metrics endpoint")
    before = scrape(part.port)["cocoon_storage_written_bytes_total"]
    for n in range(5):
        agent.append("test.money", "money", {"n": n})
    after = scrape(part.port)["cocoon_storage_written_bytes_total"]
    assert after >= before + 5 * 4096, (before, after)    # at least a page per commit


def test_scraping_a_running_agent(site, services):
    services.ingest(site.ingest_config)
    config = add_device(site, "station-41", metrics={"listen": "127.0.0.1:0"})
    agent = services.agent(config, start=False)
    agent.append("test.alert", "alert", {"n": 1})            # before the link is up
    (part,) = [p for p in agent.agent.parts if isinstance(p, MetricsPart)]
    agent.start()
    wait_for(lambda: part.port is not None, 10, what="the metrics endpoint")
    agent.wait_connected()
    for n in range(5):
        agent.append("test.money", "money", {"n": n})
    wait_for(lambda: agent.unacked() == 0, 20, what="every event acknowledged")
    values = scrape(part.port)
    assert values["cocoon_outbox_depth"] == 0
    assert values["cocoon_outbox_oldest_pending_age_seconds"] == 0
    assert values["cocoon_mqtt_connected"] == 1
    assert values["cocoon_outbox_acked_seq"] == values["cocoon_outbox_head_seq"] >= 7
    assert values["cocoon_publish_latency_seconds_count"] >= 7
    assert 0 < values["cocoon_publish_latency_seconds_sum"] < 30
    assert values["cocoon_mqtt_published_bytes_total"] > 7 * 200
    assert values["cocoon_alerts_open{source=outbox}"] == 0
    assert values["cocoon_mqtt_reconnects_total"] == 0

    site.broker.stop()
    wait_for(lambda: not agent.link.status.connected, 10, what="the link down")
    agent.append("test.alert", "alert", {"n": 2})
    values = scrape(part.port)
    assert values["cocoon_mqtt_connected"] == 0 and values["cocoon_outbox_depth"] >= 1
    assert values["cocoon_alerts_open{source=outbox}"] >= 1
    assert values["cocoon_outbox_oldest_pending_age_seconds"] >= 0
    site.broker.start()
    agent.wait_connected(15)
    wait_for(lambda: agent.unacked() == 0, 20, what="the backlog acknowledged")
    values = scrape(part.port)
    assert values["cocoon_mqtt_reconnects_total"] == 1
    assert values["cocoon_alerts_open{source=outbox}"] == 0
    agent.stop()
    with pytest.raises(OSError):
        scrape(part.port)

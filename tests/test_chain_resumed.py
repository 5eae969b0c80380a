"""A damaged outbox never leaves the bank unable to accept a device's events.

Each case runs through Mosquitto (TLS) and the ingest to the ingest's acknowledgement: 20 sales
are delivered and acknowledged, 60 more are recorded while the link is down, the outbox file is
damaged, and the agent starts again. Whatever is still readable is forwarded; what is not is
declared lost by a signed `chain.resumed`; the ingest stores every event it can, rejects none,
passes its watermark over the declared seqs, raises one alert, and acknowledges the device's
new head, so that the device prunes again. Each case runs with the ingest on SQLite and on
PostgreSQL.
"""

import json
import os
import sqlite3

import pytest

from agent.contract.envelope import parse_json_object
from agent.contract.events import Draft
from tests.support.running import (
    add_device,
    append_offline,
    ingest_alerts,
    ingest_device,
    ingest_store_path,
    ingest_store_payloads,
    outbox_path,
)
from tests.support.waiting import wait_for

DEV = "dev-a"


def sales(n: int, tag: str) -> list[Draft]:
    return [Draft("purchase.recorded", "money", {"marker": f"{tag}-{i}", "pad": "x" * 300})
            for i in range(n)]


def checkpoint(path) -> list[int]:
    """Everything into the main file; the page numbers of the events table's leaves."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return [n for (n,) in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'events' AND pagetype = 'leaf' "
            "ORDER BY pageno")]
    finally:
        conn.close()


def truncate_to_half(path) -> None:
    checkpoint(path)
    os.truncate(path, os.path.getsize(path) // 2)


def garble_the_first_page(path) -> None:
    checkpoint(path)
    with open(path, "r+b") as fh:
        fh.write(b"\xa5" * 4096)


def garble_the_meta_page(path) -> None:
    """The page of the `meta` table (the chain's head and acknowledged point) unreadable."""
    checkpoint(path)
    conn = sqlite3.connect(path)
    try:
        (page,) = conn.execute("SELECT pageno FROM dbstat WHERE name = 'meta'").fetchone()
    finally:
        conn.close()
    with open(path, "r+b") as fh:
        fh.seek(4096 * (page - 1))
        fh.write(b"\x5a" * 4096)


def zero_a_page_of_pending_events(path) -> None:
    leaves = checkpoint(path)
    with open(path, "r+b") as fh:
        fh.seek(4096 * (leaves[-3] - 1))
        fh.write(b"\0" * 4096)


@pytest.mark.parametrize("damage", [truncate_to_half, garble_the_first_page,
                                    garble_the_meta_page, zero_a_page_of_pending_events])
def test_the_bank_accepts_the_device_after_any_damage(site, site_store, services, damage):
    config = add_device(site, DEV, heartbeat_s=30)
    ingest = services.ingest(site.ingest_config)
    ingest.wait_connected()
    agent = services.agent(config)
    agent.wait_connected()
    delivered = [agent.outbox.append(d) for d in sales(20, "acked")]
    wait_for(lambda: agent.outbox.acked_seq() >= delivered[-1], 20, what="the first 20 acked")
    agent.stop()
    append_offline(site, DEV, sales(60, "pending"))       # recorded while the link was down
    damage(outbox_path(site, DEV))

    agent = services.agent(config)                         # quarantines, resumes, forwards
    agent.wait_connected()
    head = agent.outbox.head_seq()
    wait_for(lambda: agent.outbox.acked_seq() >= head, 30,
             what=f"the bank's acknowledgement of the device's head {head}")

    stored = {e["seq"]: e for e in (parse_json_object(p)
                                    for p in ingest_store_payloads(site, DEV))}
    resumed = [e for e in stored.values() if e["type"] == "chain.resumed"]
    assert len(resumed) == 1
    lost = {n for r in resumed[0]["body"]["lost"] for n in range(r["from"], r["to"] + 1)}
    assert lost, "the damage lost nothing?"
    # every seq up to the head is stored or declared lost, and nothing was rejected
    assert set(range(1, head + 1)) <= set(stored) | lost
    assert ingest_device(site, DEV)["rejected"] == 0
    markers = {e["body"].get("marker") for e in stored.values()}
    assert {f"acked-{i}" for i in range(20)} <= markers    # what the bank had, it keeps
    # and on the store the case names: no SQLite file where PostgreSQL holds the events
    assert ingest_store_path(site).exists() == (site_store == "sqlite")
    alerts = ingest_alerts(site, DEV)
    assert [a["kind"] for a in alerts].count("chain.resumed") == 1
    quarantined = [e for e in stored.values() if e["type"] == "outbox.quarantined"]
    assert len(quarantined) == 1 and quarantined[0]["seq"] == resumed[0]["seq"] + 1
    # and the device goes on: a new sale is accepted and acknowledged
    seq = agent.outbox.append(Draft("purchase.recorded", "money", {"marker": "after"}))
    wait_for(lambda: agent.outbox.acked_seq() >= seq, 20, what="the sale after the damage")
    assert ingest_device(site, DEV)["rejected"] == 0
    print(f"{damage.__name__} ({site_store}): head {head}, {len(lost)} seq(s) declared lost, "
          f"{len([s for s in stored if s in lost])} of them held by the bank, "
          f"{json.dumps(resumed[0]['body']['lost'])[:80]}")

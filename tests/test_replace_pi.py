"""Replacing a station's Pi or its SD card, as docs/field.md says, creates no fork.

The supported move: stop the agent on the old hardware, copy its configuration, keys and state
directory (the outbox with its high-water file) to the new one, start it there, and never start
the old one again. The new one goes on with the same chain: the bank accepts everything, the
old one's unacknowledged sales included, and nothing is declared lost or forked.
"""

import shutil

from agent.contract.envelope import parse_json_object
from agent.contract.events import Draft
from tests.support.running import (
    _query,
    add_device,
    ingest_device,
    ingest_store_path,
    ingest_store_payloads,
)
from tests.support.waiting import wait_for

DEV = "dev-a"


def test_moving_keys_and_outbox_to_new_hardware_creates_no_fork(site, services, tmp_path):
    config = add_device(site, DEV, heartbeat_s=60)
    ingest = services.ingest(site.ingest_config)
    ingest.wait_connected()
    old = services.agent(config)
    old.wait_connected()
    first = [old.outbox.append(Draft("purchase.recorded", "money", {"marker": f"old-{i}"}))
             for i in range(5)]
    wait_for(lambda: old.outbox.acked_seq() >= first[-1], 20, what="the first sales acked")
    ingest.stop()                                          # the bank's side is down a while
    unsent = [old.outbox.append(Draft("purchase.recorded", "money", {"marker": f"late-{i}"}))
              for i in range(3)]
    old.stop()                                             # 1. stop the old one

    new_home = tmp_path / "new-pi"                         # 2. copy everything of it over
    shutil.copytree(config.parent, new_home)
    moved_config = new_home / config.name
    shutil.rmtree(config.parent)                           # 3. the old card leaves the site

    ingest = services.ingest(site.ingest_config)
    ingest.wait_connected()
    new = services.agent(moved_config)                     # 4. start the new one
    new.wait_connected()
    after = new.outbox.append(Draft("purchase.recorded", "money", {"marker": "new-0"}))
    assert after > unsent[-1]
    wait_for(lambda: new.outbox.acked_seq() >= after, 20, what="the new Pi's sale acked")

    markers = [parse_json_object(p)["body"].get("marker")
               for p in ingest_store_payloads(site, DEV)]
    for tag in [f"old-{i}" for i in range(5)] + [f"late-{i}" for i in range(3)] + ["new-0"]:
        assert markers.count(tag) == 1, tag
    types = [parse_json_object(p)["type"] for p in ingest_store_payloads(site, DEV)]
    assert "chain.resumed" not in types
    assert _query(ingest_store_path(site), "SELECT count(*) FROM forks") == [(0,)]
    assert ingest_device(site, DEV)["rejected"] == 0

"""An older copy of the outbox put back (a backup, an SD image, its high-water file with it)
does not wedge the device: the first signed ack from the bank shows the fork, and the device
resumes after the bank's (seq, hash) and signs its unacknowledged events again, each naming the
original. The bank keeps the originals it received as forked records, never drops them.
Through Mosquitto and the ingest, to the ingest's acknowledgement.
"""

import shutil

from agent.contract.envelope import parse_json_object
from agent.contract.events import Draft
from tests.support.running import (
    add_device,
    append_offline,
    ingest_device,
    ingest_query,
    ingest_store_payloads,
    outbox_path,
)
from tests.support.waiting import wait_for

DEV = "dev-a"
FILES = ("outbox.sqlite", "outbox.sqlite.hwm")


def sell(agent, tag: str, n: int) -> int:
    seqs = [agent.outbox.append(Draft("purchase.recorded", "money",
                                      {"marker": f"{tag}-{i}", "voucher": f"{tag}-{i}"}))
            for i in range(n)]
    wait_for(lambda: agent.outbox.acked_seq() >= seqs[-1], 20, what=f"{tag} acknowledged")
    return seqs[-1]


def test_a_restored_older_outbox_is_repaired_at_the_first_ack(site, site_store, services,
                                                                tmp_path):
    config = add_device(site, DEV, heartbeat_s=60)
    data = outbox_path(site, DEV).parent
    ingest = services.ingest(site.ingest_config)
    ingest.wait_connected()
    agent = services.agent(config)
    agent.wait_connected()
    sell(agent, "early", 10)
    agent.stop()
    backup = tmp_path / "backup"
    backup.mkdir()
    for name in FILES:                                     # the technician's backup
        shutil.copy2(data / name, backup / name)

    agent = services.agent(config)
    agent.wait_connected()
    bank_head = sell(agent, "later", 20)                   # the bank holds these
    agent.stop()
    for name in ("outbox.sqlite-wal", "outbox.sqlite-shm"):
        (data / name).unlink(missing_ok=True)
    for name in FILES:                                     # ... and puts the backup back
        shutil.copy2(backup / name, data / name)
    append_offline(site, DEV, [Draft("purchase.recorded", "money",
                                     {"marker": f"restored-{i}", "voucher": f"restored-{i}"})
                               for i in range(5)])        # sold on the restored copy

    agent = services.agent(config)
    agent.wait_connected()
    wait_for(lambda: agent.outbox.acked_seq() > bank_head
             and agent.outbox.acked_seq() == agent.outbox.head_seq(), 30,
             what="the bank's acknowledgement of the repaired chain")

    stored = [parse_json_object(p) for p in ingest_store_payloads(site, DEV)]
    resumed = [e for e in stored if e["type"] == "chain.resumed"]
    assert len(resumed) == 1 and resumed[0]["body"]["after_seq"] >= bank_head
    signed_again = {e["body"]["marker"]: e for e in stored
                    if e["body"].get("marker", "").startswith("restored-")
                    and "original" in e["body"]}
    assert sorted(signed_again) == [f"restored-{i}" for i in range(5)]
    assert all(e["seq"] > resumed[0]["seq"] for e in signed_again.values())
    # what the bank held stays as it was; every original that reached it is a forked record
    markers = {e["body"].get("marker") for e in stored if "original" not in e["body"]}
    assert {f"later-{i}" for i in range(20)} <= markers
    forks = ingest_query(site, "SELECT seq, hash, payload FROM forks WHERE device = ?", (DEV,))
    originals = {e["body"]["original"]["seq"]: e["body"]["original"]["hash"]
                 for e in stored if "original" in e["body"]}
    for seq, digest, _ in forks:                 # the agent.started of the restored copy too
        assert originals.get(seq) == digest, "a forked record the device did not sign again"
    assert ingest_device(site, DEV)["rejected"] == 0
    alerts = {k for (k,) in ingest_query(site, "SELECT kind FROM alerts WHERE device = ? AND "
                                         "closed_at IS NULL", (DEV,))}
    assert "chain.resumed" in alerts
    # and the device goes on
    assert sell(agent, "after", 1) > resumed[0]["seq"]

"""A custody breach end to end: scripted tag reader -> warehouse part of the real agent ->
outbox -> Mosquitto (TLS) -> ingest, which stores it signed and acknowledges it; the bank's
pledge arrives as a signed command through the broker."""

from __future__ import annotations

import json

from agent.contract.envelope import parse_json_object
from tests.support.running import add_device, cli, ingest_store_rows
from tests.support.waiting import wait_for
from tests.test_warehouse_scenarios import LOT, Clock, ScriptedReader

DEV = "wh-01"


def test_a_breach_arrives_signed_and_acknowledged_at_the_ingest(site, services):
    config = add_device(site, DEV, heartbeat_s=30, warehouse={
        "departed_after_s": 600, "reader_silent_s": 0, "check_interval_s": 0.05})
    agent = services.agent(config, start=False)
    (w,) = agent.agent.parts
    clock = Clock()
    w.mono_ms = clock.mono_ms
    reader = ScriptedReader("dock")
    w.readers.append(reader)
    w.presence.add_reader("dock", clock.mono_ms())
    agent.start()
    ingest = services.ingest(site.ingest_config)
    agent.wait_connected()
    ingest.wait_connected()
    wait_for(reader.started.is_set, 5, what="the reader")

    reader.reads(LOT)
    w.store.add_receipt("LOT-1", ["station-01/42"], LOT, "200.5")
    wait_for(lambda: "LOT-1" in w.custody.lots, 10, what="the lot to be received")
    sent = cli("cocoon-ingest", "--config", site.operator_config, "send-command",
               "--key", site.bank_key, "--device", DEV, "--type", "pledge.create",
               "--body", json.dumps({"lots": ["LOT-1"], "tags": 4, "kg": "200.5"}),
               "--id", "pledge-1")
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: w.custody.pledges, 10, what="the pledge")

    clock.jump(601)
    reader.reads(LOT[1:])  # LOT[0] was taken out without a release

    def breach_at_ingest():
        rows = [r for r in ingest_store_rows(site, DEV) if r["type"] == "custody.breach"]
        return rows and agent.outbox.acked_seq() >= rows[0]["seq"] and rows[0]

    row = wait_for(breach_at_ingest, 20, what="the breach stored and acknowledged")
    event = parse_json_object(row["payload"])
    assert event["priority"] == "alert" and event["body"]["epc"] == LOT[0]
    assert event["body"]["lot"] == "LOT-1" and event["body"]["pledge"] == "pledge-1"
    types = {r["type"] for r in ingest_store_rows(site, DEV)}
    assert {"lot.received", "command.accepted", "command.done"} <= types
    done = [parse_json_object(r["payload"])["body"] for r in ingest_store_rows(site, DEV)
            if r["type"] == "command.done"]
    assert json.dumps(done[0]["result"]["lots"]) == '["LOT-1"]'

"""The device's own alerts at the bank: the events that open and close them (docs/events.md,
agent/contract/alerts.py) are followed by seq whatever order they arrive in, and `cocoon-ingest
status` shows them beside the ingest's own (a custody breach showed as `alerts -`)."""

import json

import pytest

from agent.contract import alerts, events, topics
from agent.contract.events import Draft
from agent.warehouse import alerts as warehouse_alerts
from tests.support.running import add_device, cli, ingest_alerts, ingest_store_seqs
from tests.support.waiting import wait_for
from tests.test_forgery import device_signer, raw_client

DEV = "warehouse-01"
EPC = "e28011600000000000000001"

BODIES = {
    "custody.breach": {"epc": EPC, "location": "bay-1", "unread_s": 120, "lot": "L-1",
                       "pledge": "P-1", "reason": "unread"},
    "tag.arrived": {"epc": EPC, "location": "gate"},
    "custody.shortfall": {"pledge": "P-1", "lots": ["L-1"], "required_tags": 4,
                          "in_stock_tags": 3, "pledged_tags": 4, "pledged_kg": "100"},
    "custody.restored": {"pledge": "P-1", "lots": ["L-1"], "required_tags": 4,
                         "in_stock_tags": 4, "pledged_tags": 4, "pledged_kg": "100"},
    "reader.offline": {"reader": "gate", "reason": "silent", "detail": "x", "tags_unknown": 1},
    "reader.online": {"reader": "gate"},
    "door.opened": {"door": "front", "out_of_hours": True, "hours": "06:00-18:00",
                    "local_time": "23:10"},
    "door.closed": {"door": "front"},
    "tamper.detected": {"input": "lid"},
    "tamper.cleared": {"input": "lid"},
    "power.lost": {"input": "mains"},
    "power.restored": {"input": "mains"},
    "climate.out_of_range": {"rh_pct": "91", "temp_c": "30", "rh_low": "60", "rh_high": "85",
                             "band": "high"},
    "climate.in_range": {"rh_pct": "70", "temp_c": "25", "rh_low": "60", "rh_high": "85"},
    "climate.sensor_failed": {"detail": "no answer"},
    "climate.sensor_restored": {},
}


@pytest.mark.parametrize("type_", sorted(BODIES))
def test_the_table_is_the_warehouse_s(type_):
    """What the warehouse opens and closes is what the contract's table (and the bank) says."""
    body = BODIES[type_]
    ours = alerts.alert_change(type_, body)
    theirs = warehouse_alerts.alert_change(Draft(type_, "alert", body))
    assert (ours is None) == (theirs is None)
    assert ours[1] == theirs.open
    # one name on each side for each alert: what opens it is what closes it
    kind = next(k for k in alerts.DEVICE_ALERTS if type_ in (k.opens, k.closes))
    other = kind.closes if type_ == kind.opens else kind.opens
    again = alerts.alert_change(other, BODIES[other])
    theirs_again = warehouse_alerts.alert_change(Draft(other, "alert", BODIES[other]))
    assert again[0] == ours[0] and theirs_again.key == theirs.key


def test_what_opens_nothing():
    assert alerts.alert_change("door.opened", dict(BODIES["door.opened"], out_of_hours=False)) \
        is None
    assert alerts.alert_change("alert.acknowledged", {"alert": "custody.breach"}) is None
    assert "alert.acknowledged" in alerts.NOT_CLOSING
    assert alerts.alert_change("purchase.recorded", {}) is None


def seal_all(site, drafts):
    out, prev, signer = [], events.GENESIS_PREV, device_signer(site, DEV)
    for seq, draft in enumerate(drafts, 1):
        out.append(events.seal(draft, device=DEV, seq=seq, prev=prev, signer=signer))
        prev = events.event_hash(out[-1])
    return out


def status_rows(site) -> dict:
    done = cli("cocoon-ingest", "--config", site.ingest_config, "status", "--json")
    assert done.returncode == 0, done.stderr
    return {r["device"]: r for r in json.loads(done.stdout)}


def test_status_shows_the_device_s_alerts_whatever_the_order(site, site_store, services):
    add_device(site, DEV)
    ingest = services.ingest(site.ingest_config)
    ingest.wait_connected()
    evs = seal_all(site, [
        Draft("agent.started", "telemetry", {"version": "t"}),
        Draft("custody.breach", "alert", BODIES["custody.breach"]),          # 2 opens
        Draft("door.opened", "alert", BODIES["door.opened"]),                # 3 opens
        Draft("alert.acknowledged", "alert", {"alert": "custody.breach"}),   # 4 closes nothing
        Draft("door.closed", "alert", BODIES["door.closed"]),                # 5 closes 3
        Draft("power.lost", "alert", BODIES["power.lost"]),                  # 6 opens
        Draft("power.restored", "alert", BODIES["power.restored"]),          # 7 closes 6
        Draft("door.opened", "telemetry", dict(BODIES["door.opened"], out_of_hours=False)),
    ])
    with raw_client(site, DEV) as raw:
        # the closing events first: a close that arrives before its opening still wins
        for i in (0, 4, 6, 1, 2, 3, 5, 7):
            raw.publish(topics.events(DEV), evs[i])
        wait_for(lambda: len(ingest_store_seqs(site, DEV)) == 8, 15, what="eight events stored")
    assert [a["kind"] for a in ingest_alerts(site, DEV)] == [f"custody.breach:{EPC}"]
    row = status_rows(site)[DEV]
    assert row["open_alerts"] == [f"custody.breach:{EPC}"]
    text = cli("cocoon-ingest", "--config", site.ingest_config, "status").stdout
    (line,) = [ln for ln in text.splitlines() if ln.startswith(DEV)]
    assert line.endswith(f"custody.breach:{EPC}")
    # the tag back in the warehouse closes it
    signer = device_signer(site, DEV)
    back = events.seal(Draft("tag.arrived", "alert", BODIES["tag.arrived"]), device=DEV, seq=9,
                       prev=events.event_hash(evs[-1]), signer=signer)
    with raw_client(site, DEV) as raw:
        raw.publish(topics.events(DEV), back)
        wait_for(lambda: not ingest_alerts(site, DEV), 15, what="the breach closed")
    assert status_rows(site)[DEV]["open_alerts"] == []

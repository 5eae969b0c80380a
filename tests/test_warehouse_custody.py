"""Custody as a pure state machine, its snapshot, and its state across a restart."""

import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from agent.contract.clock import utc_timestamp
from agent.warehouse.custody import Custody, CustodyError
from agent.warehouse.presence import Presence
from agent.warehouse.snapshot import snapshot_drafts
from agent.warehouse.store import WarehouseStore

NOW = datetime(2026, 6, 1, 8, tzinfo=timezone.utc)
EPCS = ["e2000017221101441890a1b2", "E2000017221101441890A1B3", "e2000017221101441890a1b4"]
LOW = [e.lower() for e in EPCS]


def window(start_h: float, end_h: float) -> dict:
    return {"not_before": utc_timestamp(NOW + timedelta(hours=start_h)),
            "not_after": utc_timestamp(NOW + timedelta(hours=end_h))}


@pytest.fixture
def custody():
    c = Custody()
    draft = c.receive("LOT-7", ["station-01/42", "station-01/43"], EPCS, kg="310.5")
    assert draft.type == "lot.received" and draft.priority == "alert"
    assert draft.body["tags"] == sorted(LOW) and draft.body["count"] == 3
    c.pledge("cmd-p", {"lots": ["LOT-7"], "tags": 3, "kg": "310.5"})
    return c


def test_receipts_are_checked():
    c = Custody()
    c.receive("L1", ["s/1"], ["aa"])
    with pytest.raises(CustodyError, match="already received"):
        c.receive("L1", ["s/1"], ["bb"])
    with pytest.raises(CustodyError, match="already belongs to lot L1"):
        c.receive("L2", ["s/2"], ["AA"])
    with pytest.raises(CustodyError, match="hexadecimal"):
        c.receive("L3", ["s/3"], ["xyz"])
    with pytest.raises(CustodyError, match="purchase events"):
        c.receive("L4", [], ["cc"])


def test_pledges_are_checked(custody):
    with pytest.raises(CustodyError, match="already pledged under pledge cmd-p"):
        custody.pledge("cmd-q", {"lots": ["LOT-7"], "tags": 1, "kg": "1"})
    custody.receive("LOT-8", ["s/9"], ["cc"])
    with pytest.raises(CustodyError, match="never received"):
        custody.pledge("x", {"lots": ["LOT-9"], "tags": 1, "kg": "1"})
    with pytest.raises(CustodyError, match="from 1 to 1"):
        custody.pledge("x", {"lots": ["LOT-8"], "tags": 2, "kg": "1"})
    with pytest.raises(CustodyError, match="decimal string"):
        custody.pledge("x", {"lots": ["LOT-8"], "tags": 1, "kg": 12.5})


def test_a_pledged_tag_leaving_without_release_is_a_breach(custody):
    draft = custody.departed(LOW[0], "dock#1", 600, NOW)
    assert draft.type == "custody.breach" and draft.priority == "alert"
    assert draft.body["lot"] == "LOT-7" and draft.body["pledge"] == "cmd-p"


def test_a_release_lets_its_quantity_leave_within_its_window(custody):
    result = custody.authorize_release("cmd-r", {"lot": "LOT-7", "tags": 2, **window(-1, 2)},
                                       NOW)
    assert result["pledge"] == "cmd-p" and "kg" not in result
    first = custody.departed(LOW[0], "dock#1", 600, NOW)
    second = custody.departed(LOW[1], "dock#1", 600, NOW)
    assert [first.type, second.type] == ["tag.departed"] * 2
    assert second.body["release"] == "cmd-r" and second.body["release_left"] == 0
    assert custody.departed(LOW[2], "dock#1", 600, NOW).type == "custody.breach"
    assert custody.pledges["cmd-p"].required == 1


def test_a_release_outside_its_window_does_not_count(custody):
    custody.authorize_release("later", {"lot": "LOT-7", "tags": 3, **window(1, 2)}, NOW)
    assert custody.departed(LOW[0], "d", 1, NOW).type == "custody.breach"
    assert custody.departed(LOW[1], "d", 1, NOW + timedelta(hours=3)).type == "custody.breach"
    assert custody.departed(LOW[2], "d", 1, NOW + timedelta(hours=1.5)).type == "tag.departed"


def test_bad_releases_are_refused(custody):
    with pytest.raises(CustodyError, match="window ended"):
        custody.authorize_release("r1", {"lot": "LOT-7", "tags": 1, **window(-2, -1)}, NOW)
    with pytest.raises(CustodyError, match="never received"):
        custody.authorize_release("r2", {"lot": "LOT-X", "tags": 1, **window(0, 1)}, NOW)
    with pytest.raises(CustodyError, match="ends before it begins"):
        custody.authorize_release("r3", {"lot": "LOT-7", "tags": 1, **window(2, 1)}, NOW)
    with pytest.raises(CustodyError, match="RFC 3339"):
        custody.authorize_release("r4", {"lot": "LOT-7", "tags": 1, "not_before": "today",
                                         "not_after": "tomorrow"}, NOW)
    custody.receive("FREE", ["s/1"], ["ff"])
    with pytest.raises(CustodyError, match="not pledged"):
        custody.authorize_release("r5", {"lot": "FREE", "tags": 1, **window(0, 1)}, NOW)
    assert custody.releases == {}


def test_shortfall_is_raised_once_and_restored_once(custody):
    present = set(LOW)
    assert custody.check_stock(present.__contains__) == []
    present.discard(LOW[0])
    (short,) = custody.check_stock(present.__contains__)
    assert short.type == "custody.shortfall" and short.body["in_stock_tags"] == 2
    assert custody.check_stock(present.__contains__) == []
    present.add(LOW[0])
    (back,) = custody.check_stock(present.__contains__)
    assert back.type == "custody.restored"


def test_snapshot_lists_present_tags_with_the_documented_digest(custody):
    p = Presence()
    p.read("dock", LOW[2], 1, -60, 0)
    p.read("dock", LOW[0], 1, -60, 0)
    (snap,) = snapshot_drafts(custody, p)
    assert snap.type == "inventory.snapshot" and snap.priority == "alert"
    expected = "\n".join(sorted([LOW[0], LOW[2]]))
    assert snap.body["tags"] == sorted([LOW[0], LOW[2]]) and snap.body["count"] == 2
    assert snap.body["epcs_sha256"] == hashlib.sha256(expected.encode()).hexdigest()
    assert snap.body["pledged_tags"] == 3 and snap.body["bound_tags"] == 3


def test_custody_and_tags_survive_a_restart(custody, tmp_path):
    custody.authorize_release("cmd-r", {"lot": "LOT-7", "tags": 2, **window(-1, 2)}, NOW)
    custody.departed(LOW[0], "d", 1, NOW)
    custody.check_stock(lambda e: False)
    store = WarehouseStore(tmp_path / "warehouse.sqlite")
    store.save_custody(custody)
    store.save_tags([(LOW[1], "present", "dock", 2)])
    store.close()
    again = WarehouseStore(tmp_path / "warehouse.sqlite")
    c2 = again.load_custody()
    assert c2.lots == custody.lots and c2.pledges == custody.pledges
    assert c2.releases == custody.releases
    assert c2.lot_of(LOW[1]) == "LOT-7"
    assert again.load_tags() == [(LOW[1], "present", "dock", 2)]
    # the remaining release tag still works after the restart, and then no more
    assert c2.departed(LOW[1], "d", 1, NOW).type == "tag.departed"
    assert c2.departed(LOW[2], "d", 1, NOW).type == "custody.breach"
    again.close()


def test_kg_is_recorded_and_reported_but_tags_are_what_is_counted(custody):
    """A release's kg is echoed in its result (command.done) and kept; the stock check counts
    tags only, so a pledge whose tags are all in stock is whole whatever its kg says."""
    result = custody.authorize_release("cmd-r", {"lot": "LOT-7", "tags": 1, "kg": "100.5",
                                                 **window(-1, 2)}, NOW)
    assert result["kg"] == "100.5" and custody.releases["cmd-r"].kg == "100.5"
    assert custody.departed(LOW[0], "d", 1, NOW).type == "tag.departed"
    assert custody.check_stock(set(LOW[1:]).__contains__) == []
    custody.pledges["cmd-p"].kg = "99999"
    assert custody.check_stock(set(LOW[1:]).__contains__) == []

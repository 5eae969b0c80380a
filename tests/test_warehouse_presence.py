"""Presence as a pure state machine: debounced departures, moves by RSSI average, outages."""

from agent.warehouse.presence import (
    Arrived,
    Departed,
    Moved,
    Presence,
    PresenceSettings,
    ReaderDown,
    ReaderUp,
    TagStatus,
)

S = PresenceSettings(departed_after_ms=600_000, moved_min_reads=2, moved_window_ms=60_000,
                     reader_silent_ms=900_000)
A, B = "aa01", "bb02"


def kinds(changes):
    return [type(c).__name__ for c in changes]


def test_a_tag_arrives_once_and_departs_only_after_t_unread():
    p = Presence(S)
    p.add_reader("dock", 0)
    assert p.read("dock", A, 1, -60, 0) == [Arrived(A, ("dock", 1), returned=False)]
    assert p.read("dock", A, 1, -61, 1000) == []
    p.read("dock", B, 1, -50, 0)
    for t in range(0, 600_000, 30_000):  # B keeps being read, A is not
        p.read("dock", B, 1, -50, t)
        assert p.tick(t) == []
    changes = p.tick(601_000)
    assert changes == [Departed(A, ("dock", 1), 600_000)]
    assert p.status(A) is TagStatus.DEPARTED and p.status(B) is TagStatus.PRESENT
    assert p.tick(700_000) == []  # departed once
    assert p.read("dock", A, 2, -60, 700_000) == [Arrived(A, ("dock", 2), returned=True)]


def test_moved_needs_min_reads_and_a_higher_average_at_the_new_antenna():
    p = Presence(S)
    p.read("dock", A, 1, -60, 0)
    p.read("dock", A, 1, -62, 100)
    assert p.read("dock", A, 2, -40, 200) == []          # one read at antenna 2 is not enough
    (moved,) = p.read("dock", A, 2, -44, 300)
    assert isinstance(moved, Moved) and moved.from_ == ("dock", 1) and moved.to == ("dock", 2)
    assert moved.rssi_avg == -42
    # weaker reads at the old antenna do not move it back
    assert p.read("dock", A, 1, -70, 400) == []
    assert p.read("dock", A, 1, -71, 500) == []
    assert p.tags[A].location == ("dock", 2)


def test_a_weaker_new_antenna_does_not_win_but_a_stale_old_one_does_not_hold():
    p = Presence(S)
    for t in range(0, 500, 100):
        p.read("dock", A, 1, -50, t)
    assert p.read("dock", A, 2, -70, 600) == [] and p.read("dock", A, 2, -70, 700) == []
    # 2 minutes later antenna 1 no longer sees it: its old average is stale
    p.read("dock", A, 2, -70, 130_000)
    (moved,) = p.read("dock", A, 2, -71, 130_100)
    assert moved.to == ("dock", 2)


def test_reader_outage_makes_tags_unknown_with_one_change_and_no_departures():
    p = Presence(S)
    for i in range(50):
        p.read("dock", f"{i:04x}", 1, -60, 0)
    (down,) = p.health("dock", False, "port vanished", 10_000)
    assert down == ReaderDown("dock", "offline", "port vanished", 50)
    assert p.health("dock", False, "still gone", 20_000) == []
    assert all(t.status is TagStatus.UNKNOWN for t in p.tags.values())
    assert p.tick(5_000_000) == []  # an hour later: no departure storm
    (up,) = p.health("dock", True, "", 5_000_000)
    assert up == ReaderUp("dock", 4_990_000, "offline")
    for i in range(49):  # all but one are read again soon after
        p.read("dock", f"{i:04x}", 1, -60, 5_010_000)
    assert p.tick(5_500_000) == []  # the unread one gets a full T after the return
    assert p.tick(5_600_000) == [Departed("0031", ("dock", 1), 5_600_000)]


def test_a_reader_that_stops_answering_is_down_before_its_tags_could_depart():
    p = Presence(PresenceSettings(departed_after_ms=600_000, reader_silent_ms=600_000))
    p.add_reader("dock", 0)
    p.read("dock", A, 1, -60, 0)
    p.answered("dock", 1_000)
    assert p.tick(599_999) == []
    changes = p.tick(601_000)        # neither a read nor an answer for 600 s
    assert kinds(changes) == ["ReaderDown"] and changes[0].reason == "silent"
    assert p.status(A) is TagStatus.UNKNOWN
    assert p.tick(1_300_000) == []
    assert p.health("dock", True, "", 1_300_000) == []  # online is not enough: it must answer
    assert kinds(p.answered("dock", 1_310_000)) == ["ReaderUp"]
    assert p.status(A) is TagStatus.UNKNOWN            # until read again, within a full T
    p.answered("dock", 1_600_000)
    assert p.tick(1_909_999) == []
    assert p.tick(1_910_000) == [Departed(A, ("dock", 1), 1_910_000)]


def test_a_silent_reader_comes_back_with_its_next_read():
    p = Presence(PresenceSettings(departed_after_ms=600_000, reader_silent_ms=600_000))
    p.add_reader("dock", 0)
    p.read("dock", A, 1, -60, 0)
    assert kinds(p.tick(600_000)) == ["ReaderDown"]
    assert kinds(p.read("dock", A, 1, -60, 1_300_000)) == ["ReaderUp"]
    assert p.status(A) is TagStatus.PRESENT


def test_emptying_the_field_of_a_reader_that_keeps_answering_departs_every_tag():
    """Every tag under the reader is taken; the module goes on answering "no tag". That is
    goods leaving, not a reader outage, even when reader_silent equals departed_after."""
    p = Presence(PresenceSettings(departed_after_ms=600_000, reader_silent_ms=600_000))
    p.add_reader("dock", 0)
    for epc in (A, B):
        p.read("dock", epc, 1, -60, 0)
    for t in range(30_000, 600_000, 30_000):
        p.answered("dock", t)         # empty inventory rounds
        assert p.tick(t) == []
    changes = p.tick(600_000)
    assert changes == [Departed(A, ("dock", 1), 600_000), Departed(B, ("dock", 1), 600_000)]
    assert p.readers_down() == []
    assert p.answered("dock", 600_000) == []        # answering while up changes nothing


def test_tags_of_a_healthy_reader_depart_while_another_reader_is_down():
    p = Presence(S)
    p.read("north", A, 1, -60, 0)
    p.read("south", B, 1, -60, 0)
    p.health("south", False, "cable", 1000)
    p.read("north", "cc03", 1, -60, 600_000)
    assert p.tick(600_001) == [Departed(A, ("north", 1), 600_001)]
    assert p.status(B) is TagStatus.UNKNOWN


def test_restored_tags_get_a_full_t_after_a_restart():
    p = Presence(S)
    p.add_reader("dock", 50)
    p.restore([(A, "present", "dock", 1), (B, "departed", "dock", 2)], 50)
    assert p.tick(600_000) == []
    assert p.tick(600_050) == [Departed(A, ("dock", 1), 600_000)]
    p2 = Presence(S)
    p2.add_reader("dock", 0, down_reason="offline", detail="cable")
    p2.restore([(A, "unknown", "dock", 1)], 0)
    assert p2.health("dock", False, "cable", 10) == []  # the same outage, not a new one


def test_a_tag_departed_long_ago_is_forgotten_and_arrives_new_if_seen_again():
    from dataclasses import replace

    from agent.warehouse.presence import Forgotten

    p = Presence(replace(S, forget_departed_ms=3_600_000, reader_silent_ms=0))
    p.add_reader("dock", 0)
    p.read("dock", A, 1, -60, 0)
    assert p.tick(600_000) == [Departed(A, ("dock", 1), 600_000)]
    assert p.tick(3_599_999) == []
    assert p.tick(3_600_000) == [Forgotten(A)]
    assert p.status(A) is None and A not in p.tags
    assert p.read("dock", A, 1, -60, 4_000_000) == [Arrived(A, ("dock", 1), returned=False)]

"""Doors, tamper and power as a pure state machine: debouncing, opening hours."""

from datetime import time

import pytest

from agent.errors import ConfigError
from agent.warehouse.doors import Debouncer, Guard, Hours, Input, Kind

DAY, NIGHT = time(10, 0), time(23, 30)


def guard():
    g = Guard([Input("main", Kind.DOOR, True), Input("box", Kind.TAMPER, True),
               Input("ups", Kind.POWER, False)], Hours.parse("07:00-19:00"), 50)
    assert g.start({"main": False, "box": False, "ups": True}, 0, DAY) == []
    return g


def test_hours():
    assert Hours.parse("07:00-19:00").contains(time(7, 0))
    assert not Hours.parse("07:00-19:00").contains(time(19, 0))
    night = Hours.parse("22:00-06:00")
    assert night.contains(time(23, 0)) and night.contains(time(5, 59))
    assert not night.contains(time(12, 0))
    assert not Hours.parse("").contains(time(12, 0))
    with pytest.raises(ConfigError, match="HH:MM-HH:MM"):
        Hours.parse("7-19")


def test_chatter_shorter_than_the_debounce_is_ignored():
    d = Debouncer(50, False, 0)
    assert d.feed(True, 10) is None and d.feed(False, 20) is None and d.feed(True, 30) is None
    assert d.feed(True, 70) is None
    assert d.feed(True, 80) is True
    assert d.feed(True, 200) is None


def test_door_opened_in_hours_is_telemetry_and_out_of_hours_an_alert():
    g = guard()
    assert g.sample("main", True, 100, DAY) == []
    (opened,) = g.sample("main", True, 150, DAY)
    assert opened.type == "door.opened" and opened.priority == "telemetry"
    (closed,) = g.sample("main", False, 200, DAY) + g.sample("main", False, 260, DAY)
    assert closed.priority == "telemetry"
    g.sample("main", True, 300, NIGHT)
    (opened,) = g.sample("main", True, 360, NIGHT)
    assert opened.priority == "alert" and opened.body["out_of_hours"] is True
    g.sample("main", False, 400, NIGHT)
    (closed,) = g.sample("main", False, 460, NIGHT)
    assert closed.priority == "alert" and closed.body["opened_out_of_hours"] is True


def test_tamper_and_power_are_alerts_both_ways():
    g = guard()
    g.sample("box", True, 0, DAY)
    assert [d.type for d in g.sample("box", True, 60, DAY)] == ["tamper.detected"]
    g.sample("ups", False, 100, DAY)  # the power-good line drops
    assert [d.type for d in g.sample("ups", False, 160, DAY)] == ["power.lost"]
    g.sample("ups", True, 200, DAY)
    assert [d.type for d in g.sample("ups", True, 250, DAY)] == ["power.restored"]


def test_an_alarm_present_at_start_is_reported():
    g = Guard([Input("main", Kind.DOOR, True)], Hours.parse("07:00-19:00"), 50)
    (d,) = g.start({"main": True}, 0, NIGHT)
    assert d.type == "door.opened" and d.priority == "alert"


def test_alarms_open_before_a_restart_are_cleared_or_kept_not_repeated():
    g = Guard([Input("main", Kind.DOOR, True), Input("tamper", Kind.TAMPER, True),
               Input("power", Kind.POWER, False)], Hours.parse("07:00-19:00"), 50)
    # power back and the door shut while the agent was down; the enclosure still open
    drafts = g.start({"main": False, "tamper": True, "power": True}, 0, DAY,
                     open_alarms={"main", "tamper", "power"})
    assert [(d.type, d.priority) for d in drafts] == [("door.closed", "alert"),
                                                      ("power.restored", "alert")]
    assert drafts[0].body == {"door": "main", "opened_out_of_hours": True}
    assert g.alarm == {"main": False, "tamper": True, "power": False}
    g.sample("tamper", False, 100, DAY)
    assert [d.type for d in g.sample("tamper", False, 200, DAY)] == ["tamper.cleared"]


def test_power_still_lost_after_a_restart_is_not_reported_again():
    g = Guard([Input("power", Kind.POWER, False)], Hours.parse("07:00-19:00"), 50)
    assert g.start({"power": False}, 0, DAY, open_alarms={"power"}) == []
    g.sample("power", True, 100, DAY)
    assert [d.type for d in g.sample("power", True, 200, DAY)] == ["power.restored"]

"""The backend's time hint is recorded with the device clock's offset, never applied."""

from datetime import datetime, timezone

import pytest

from agent.contract.commands import Command
from agent.contract.envelope import parse_json_object
from agent.errors import CocoonError
from agent.fleet.time_hint import time_hint_handler

DEVICE_NOW = datetime(2026, 11, 28, 8, 0, 0, tzinfo=timezone.utc)


def hint(utc) -> Command:
    return Command("t-1", "dev-a", "time.hint", None, None, {"utc": utc}, "k" * 64)


def test_the_offset_is_recorded_and_a_large_one_is_an_alert(make_outbox):
    outbox = make_outbox()
    handle = time_hint_handler(outbox, now=lambda: DEVICE_NOW)
    assert handle(hint("2026-11-28T07:59:58.500000Z")) == {"offset_ms": 1500}
    assert handle(hint("2026-11-28T09:00:00Z")) == {"offset_ms": -3_600_000}
    small, large = (parse_json_object(s.payload) for s in outbox.pending(10))
    assert small["priority"] == "telemetry" and large["priority"] == "alert"
    assert small["body"]["backend_utc"] == "2026-11-28T07:59:58.500000Z"
    assert small["body"]["device_utc"] == "2026-11-28T08:00:00.000000Z"
    assert large["body"]["offset_ms"] == -3_600_000 and "mono_ms" in large["body"]


@pytest.mark.parametrize("bad", [None, 12, "yesterday", "2026-11-28T08:00:00+08:00"])
def test_a_malformed_hint_is_refused(make_outbox, bad):
    with pytest.raises(CocoonError, match="RFC 3339 UTC"):
        time_hint_handler(make_outbox())(hint(bad))

"""The clerk's keys and the station screen: pure parsing and rendering."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agent.station import purchase as p
from agent.station.console import ClerkKeyError, CorrectRequest, Grade, Quit, VoidRequest, parse_key
from agent.station.view import SaleLine, StationView, render


def test_keys_become_station_actions():
    assert parse_key("c") == p.Confirm()
    assert parse_key(" X ") == p.Cancel()
    assert parse_key("o") == p.SignOut()
    assert parse_key("q") == Quit()
    assert parse_key("g shell_g=9.6 moisture_pct=15 defects_pct.mouldy=1.5") == Grade(
        {"shell_g": "9.6", "moisture_pct": "15", "defects_pct": {"mouldy": "1.5"}})
    assert parse_key("v station-01-20261128-0003 wrong farmer card") == VoidRequest(
        "station-01-20261128-0003", "wrong farmer card")
    assert parse_key("r station-01-20261128-0003 wrong grade") == CorrectRequest(
        "station-01-20261128-0003", "wrong grade")


@pytest.mark.parametrize("line, words", [
    ("", "type a command"),
    ("z", "unknown key"),
    ("c now", "takes nothing"),
    ("g moisture_pct=15", "needs shell_g"),
    ("g shell_g", "name=value"),
    ("g shell_g=abc", "not a measurement"),
    ("g shell_g=-1", "not a measurement"),
    ("g shell_g=nan", "not a measurement"),
    ("g colour=3 shell_g=9", "unknown measurement"),
    ("v station-01-20261128-0003", "reason is required"),
    ("r station-01-20261128-0003", "reason is required"),
])
def test_bad_keys_say_what_to_type(line, words):
    with pytest.raises(ClerkKeyError, match=words):
        parse_key(line)


def view(**kw) -> StationView:
    base = dict(device="station-01", phase="confirming", clerk="Clerk Li (clerk)",
                farmer="Wang Xiuying (F-0042)",
                weighing=p.Weighing("bench-1", 52_400, 400, 52_000, True, True),
                priced=p.Priced("+2", Decimal("40.10"), Decimal("2085.20"), {}),
                message="Farmer confirms?", online=True, queued=0,
                sales=(SaleLine("station-01-20261128-0001", "F-0042", 52_000, "2085.20",
                                "acknowledged"),))
    return StationView(**{**base, **kw})


def test_the_screen_shows_the_sale_and_todays_vouchers():
    text = render(view())
    assert "gross 52.400 kg  tare 0.400 kg  net 52.000 kg  STABLE" in text
    assert "grade +2  40.10 yuan/kg  amount 2085.20 yuan" in text
    assert "Wang Xiuying (F-0042)" in text and ">> Farmer confirms?" in text
    assert "station-01-20261128-0001" in text and "acknowledged" in text
    assert "link: online" in text


def test_the_screen_says_when_the_scale_or_the_link_is_down():
    moving = p.Weighing("bench-1", 10, 400, -390, False, False, reason="below minimum load")
    text = render(view(weighing=moving, online=False, queued=7, priced=None))
    assert "moving  (below minimum load)" in text and "net -0.390 kg" in text
    assert "OFFLINE, 7 events queued safely" in text
    assert "scale silent" in render(view(weighing=None))

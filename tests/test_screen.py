"""The clerk's screen without a browser: its configuration, its words, its fields, and its HTTP
interface against a real station (sessions, cross-site refusals, the event stream's resume)."""

from __future__ import annotations

import http.client
import json
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from agent.contract.pricing.tables import parse_price_table
from agent.demo.screen_client import ScreenClient
from agent.errors import ConfigError
from agent.screen.config import parse_screen
from agent.screen.fields import grade_fields
from agent.screen.flow_words import keyed_messages
from agent.screen.i18n import LOCALE_DIR, Language
from agent.station import card_messages, messages
from agent.station import purchase as p
from tests.support.screen_station import start_screen_station, table_in_force
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.pty",)
CONFIG = Path("/etc/cocoon-agent/agent.toml")


def test_the_screen_listens_on_loopback_in_chinese_by_default():
    config = parse_screen(CONFIG, {})
    assert (config.listen, config.port, config.language) == ("127.0.0.1", 8480, "zh-CN")
    assert parse_screen(CONFIG, {"listen": "::1", "language": "en"}).language == "en"


@pytest.mark.parametrize("table, words", [
    ({"listen": "0.0.0.0"}, "by which names or addresses"),
    ({"language": "fr"}, "one of zh-CN, en"),
    ({"port": 70000}, "port"),
    ({"lsiten": "127.0.0.1"}, "lsiten"),
])
def test_a_screen_on_the_network_and_bad_keys_are_refused(table, words):
    with pytest.raises(ConfigError, match=words):
        parse_screen(CONFIG, table)


def test_every_word_has_its_chinese_and_keyed_messages_are_the_flows():
    with (LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "screen.po").open("rb") as f:
        catalog = read_po(f)
    with (LOCALE_DIR / "screen.pot").open("rb") as f:
        template = read_po(f)
    untranslated = [m.id for m in catalog if m.id and not m.string]
    assert untranslated == []
    assert {m.id for m in template if m.id} == {m.id for m in catalog if m.id}
    english = keyed_messages(Language("en"))
    CATALOGUE = {**messages.CATALOGUE, **card_messages.CATALOGUE}
    assert set(english) == set(CATALOGUE)
    assert all(english[k] == CATALOGUE[k] for k in CATALOGUE)
    assert Language("zh-CN")._("Confirm") == "确认"
    assert Language("zh-CN").kg(52_400) == "52.400"


def test_grade_fields_are_the_measurements_the_table_uses():
    table = parse_price_table(table_in_force(datetime.now(timezone.utc)))
    fields = {f.name: (f.unit, str(f.low), str(f.high)) for f in grade_fields(table)}
    assert fields == {
        "shell_g": ("g", "0", "50"), "reelable_pct": ("%", "0", "100"),
        "moisture_pct": ("%", "0", "100"), "defects_pct.perforated": ("%", "0", "100"),
        "defects_pct.stained": ("%", "0", "100"), "defects_pct.thin": ("%", "0", "100"),
        "defects_pct.mouldy": ("%", "0", "100")}


def raw(st, method: str, path: str, *, headers: dict | None = None, body: bytes = b"",
        timeout: float = 10):
    host, port = st.url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    conn.request(method, path, body=body or None, headers=headers or {})
    reply = conn.getresponse()
    return reply, conn


def test_only_the_signed_in_clerks_page_can_act(site, services, pty_pair, tmp_path,
                                                virtual_card):
    st = start_screen_station(site, services, pty_pair, tmp_path, virtual_card, language="en")
    clerk = ScreenClient(st.url).open()
    cookie = next(iter(clerk.jar))
    reply, _ = raw(st, "GET", "/")
    set_cookie = reply.getheader("Set-Cookie")
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie

    status, answer = clerk.act("cancel")
    assert status == 403 and "staff card" in answer["error"]        # nobody signed in
    with st.staff:
        wait_for(lambda: st.part.station.flow.phase is p.Phase.READY, 10, what="signed in")

    for headers, code in [
        ({"Origin": "http://evil.example"}, 403),                    # another site's page
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"X-Cocoon-Token": "forged"}, 403),                         # not the page's token
        ({"Content-Type": "text/plain"}, 415),                       # a plain form post
    ]:
        status, answer = clerk.act("sign-out", headers=headers)
        assert status == code, (headers, answer)
    anonymous = ScreenClient(st.url)                                 # no session at all
    anonymous.token = clerk.token
    assert anonymous.act("sign-out")[0] == 403
    reply, _ = raw(st, "GET", "/", headers={"Host": "evil.example:80"})   # DNS rebinding
    assert reply.status == 421
    assert st.part.station.flow.phase is p.Phase.READY               # nothing was done

    status, answer = clerk.act("grade", measurements={"shell_g": "abc"})
    assert status == 400 and "not a measurement" in answer["error"]  # the console's words
    assert clerk.act("reprint", voucher="")[0] == 400
    # void and correct: a voucher and a reason; a sale the station does not have is refused at
    # once, in the clerk's words; the clerk's own card cannot void (the flow says so)
    assert clerk.act("void", voucher="station-01-20261207-0001")[0] == 400
    assert clerk.act("correct", voucher="x", reason="  ")[0] == 400
    status, answer = clerk.act("void", voucher="V-9", reason="wrong weight")
    assert status == 409 and answer["error"] == "No sale V-9 at this station"
    # the end of the day, from the sales panel: the station records day.closed
    status, _ = clerk.act("close-day")
    assert status == 202
    wait_for(lambda: st.part.message.startswith("Day ") and "closed: 0 sales" in
             st.part.message, 10, what=f"day.closed recorded ({st.part.message})")
    status, _ = clerk.act("sign-out")
    assert status == 202
    wait_for(lambda: st.part.station.flow.phase is p.Phase.IDLE, 10, what="signed out")
    assert cookie.name == "cocoon_screen"


def test_the_event_stream_resumes_after_the_last_state_seen(site, services, pty_pair, tmp_path,
                                                             virtual_card):
    st = start_screen_station(site, services, pty_pair, tmp_path, virtual_card, language="en")
    seen: list[dict] = []
    stop = threading.Event()
    client = ScreenClient(st.url)
    client.follow(seen.append, stop)
    wait_for(lambda: seen, 10, what="a first state")
    last = client.last_event_id
    stop.set()
    # Reconnecting with the last id: only newer states come (heartbeats keep the station's
    # queue moving, so a newer one comes soon); without one, the current state comes at once.
    reply, conn = raw(st, "GET", "/events", headers={"Last-Event-ID": last})
    with st.staff:                                                   # the station changes
        lines = [reply.readline() for _ in range(4)]
    conn.close()
    assert lines[0] == b"retry: 1000\n"
    run, seen = last.split(".")
    ids = [line[3:].strip().decode().split(".") for line in lines if line.startswith(b"id:")]
    assert ids and ids[0][0] == run and int(ids[0][1]) > int(seen)
    state = json.loads(next(line for line in lines if line.startswith(b"data:"))[5:])
    assert state["device"] == "station-01"
    # A browser that saw an earlier run of the agent (a restart) gets the current state at once.
    for stale in ("0123abcd.999999", "", "garbage"):
        reply, conn = raw(st, "GET", "/events", headers={"Last-Event-ID": stale}, timeout=2)
        lines = [reply.readline() for _ in range(3)]
        conn.close()
        assert lines[2].startswith(f"id: {run}.".encode()), (stale, lines)
        assert int(lines[2][3:].decode().split(".")[1]) >= int(ids[0][1])


def test_a_busy_port_leaves_the_station_running_and_says_why(site, services, pty_pair,
                                                             tmp_path, virtual_card, caplog):
    import socket


    with socket.socket() as other:                  # another program holds the port
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        st = start_screen_station(site, services, pty_pair, tmp_path, virtual_card,
                                  language="en", port=port)
        wait_for(lambda: "cannot serve the clerk's screen" in caplog.text, 10,
                 what="the reason logged")
        assert st.screen.url is None
        with st.staff:                              # the station still works
            wait_for(lambda: st.part.station.flow.phase is p.Phase.READY, 10,
                     what="signed in without the screen")

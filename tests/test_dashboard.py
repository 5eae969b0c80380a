"""The warehouse monitor's dashboard over HTTP, served by the screen part of a warehouse agent
(waitress on loopback) over the real warehouse service: scripted tag reads, gpiozero mock pins,
a simulated SHT3x and a real signing outbox. A custody breach is shown with what to do, the
siren sounds and the light stays on; a signed-in monitor acknowledges it with a note (a signed
`alert.acknowledged`, the alert still open); nothing acts without the page's session or from
another site."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from types import SimpleNamespace

import pytest
from gpiozero.pins.mock import MockFactory

from agent.contract.chain import check_capture
from agent.contract.signing import Verifier
from agent.screen.config import ScreenConfig
from agent.screen.server import ScreenPart
from agent.warehouse.store import WarehouseStore
from tests.support.waiting import wait_for
from tests.test_warehouse_scenarios import DEV, LOT, OTHER, Rig


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


class Dashboard:
    """The screen part of an agent whose only other part is the warehouse."""

    def __init__(self, rig: Rig, language: str = "en", config: ScreenConfig | None = None):
        self.rig = rig
        config = config or ScreenConfig("127.0.0.1", 0, language)
        agent = SimpleNamespace(
            parts=[rig.w], config=SimpleNamespace(
                section=lambda name: config if name == "screen" else None,
                device=SimpleNamespace(id=DEV, data_dir=rig.tmp_path)))
        self.stop = threading.Event()
        self.part = ScreenPart(agent)
        self.part.start(self.stop)
        assert self.part.url is not None
        self.port = self.part.server.effective_port
        self.cookie = self.token = ""

    def request(self, method: str, path: str, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            hdrs = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers=hdrs)
            reply = conn.getresponse()
            return reply.status, dict(reply.getheaders()), reply.read()
        finally:
            conn.close()

    def open_page(self) -> str:
        status, headers, body = self.request("GET", "/")
        assert status == 200
        self.cookie = headers["Set-Cookie"].split(";")[0]
        self.token = re.search(rb'name="cocoon-token" content="([^"]+)"', body).group(1).decode()
        return body.decode()

    def act(self, path: str, body: dict, **headers):
        hdrs = {"Content-Type": "application/json", "Cookie": self.cookie,
                "X-Cocoon-Token": self.token, "Origin": f"http://127.0.0.1:{self.port}",
                "Sec-Fetch-Site": "same-origin", **headers}
        status, _, reply = self.request("POST", path, body, hdrs)
        return status, json.loads(reply)

    def state(self) -> dict:
        status, _, body = self.request("GET", "/state")
        assert status == 200
        return json.loads(body)

    def close(self):
        if not self.stop.is_set():
            self.stop.set()
            self.part.close()


@pytest.fixture
def breached(tmp_path, make_outbox, factory):
    """A pledged lot of four; two of its bales leave without a release."""
    rig = Rig(tmp_path, make_outbox(), factory, siren_s=0.5)
    rig.reader.reads(LOT + OTHER)
    rig.receive()
    rig.pledge()
    board = Dashboard(rig)
    yield rig, board
    board.close()
    rig.close()


def test_a_breach_is_shown_with_what_to_do_and_acknowledged_with_a_note(breached, factory,
                                                                       signer):
    rig, board = breached
    page = board.open_page()
    assert '<html lang="en">' in page and "/static/dashboard.js" in page
    assert board.state()["alerts"] == []
    rig.leave_with(LOT[2:] + OTHER)
    breaches = rig.events("custody.breach")
    assert len(breaches) == 2
    wait_for(lambda: len(board.state()["alerts"]) == 3, 5, what="the alerts on the dashboard")
    state = board.state()
    alert = next(a for a in state["alerts"] if a["key"] == f"breach:{LOT[0]}")
    assert alert["seq"] == next(b["seq"] for b in breaches if b["body"]["epc"] == LOT[0])
    assert alert["title"] == "A pledged bale left without a release"
    assert "Find the bale" in alert["advice"] and LOT[0] in alert["detail"]
    (lot,) = state["lots"]
    assert (lot["lot"], lot["pledged"], lot["present"], lot["gone"], lot["missing"]) == \
        ("LOT-1", 4, 2, 2, 2)
    gone = {t["epc"]: t for t in lot["tags"]}
    assert gone[LOT[0]]["status"] == "departed" and gone[LOT[2]]["status"] == "present"
    assert state["light"] is True and state["siren"] is True
    assert [s["text"] for s in state["site"]] == ["closed", "closed", "mains"]

    # The siren sounds for siren_s; the light stays on while the alerts are open.
    wait_for(lambda: factory.pin(19).state is False, 3, what="the siren's end")
    assert factory.pin(26).state is True

    # Acknowledging needs a monitor signed in.
    status, reply = board.act("/acknowledge", {"alert_seq": alert["seq"], "note": "x"})
    assert status == 403 and "Sign in" in reply["error"]
    assert board.act("/sign-in", {"staff": "  "})[0] == 400
    assert board.act("/sign-in", {"staff": "W-07"}) == (200, {"ok": True, "staff": "W-07"})
    status, reply = board.act("/acknowledge", {"alert_seq": alert["seq"],
                                               "note": "back door found open; bank told"})
    assert status == 202, reply
    (ack,) = rig.events("alert.acknowledged")
    assert ack["seq"] == reply["seq"] and ack["priority"] == "alert"
    assert ack["body"] == {"alert_seq": alert["seq"], "alert": "custody.breach",
                           "note": "back door found open; bank told", "staff": "W-07"}
    # Signed and chained like every event: the device's public key alone checks it.
    payloads = [s.payload for s in rig.outbox.pending(100_000)]
    report = check_capture(payloads, Verifier.from_pem(signer.public_key_pem()))
    assert report.ok, report.problems
    # It closes nothing: the alert stays open (the light on), now with its acknowledgement.
    assert factory.pin(26).state is True
    store = WarehouseStore(rig.tmp_path / "warehouse.sqlite", readonly=True)
    assert f"breach:{LOT[0]}" in [r[0] for r in store.alert_rows()]
    store.close()
    wait_for(lambda: next(a for a in board.state()["alerts"]
                          if a["key"] == f"breach:{LOT[0]}")["acks"], 5, what="the ack shown")
    shown = next(a for a in board.state()["alerts"] if a["key"] == f"breach:{LOT[0]}")
    assert shown["acks"][0]["staff"] == "W-07" and "bank told" in shown["acks"][0]["note"]
    assert len(board.state()["alerts"]) == 3
    # An alert that is not open cannot be acknowledged.
    status, reply = board.act("/acknowledge", {"alert_seq": 1, "note": ""})
    assert status == 409 and "no open alert" in reply["error"]

    # The bales come back: their alerts close with their acknowledgements, the light goes off.
    rig.reader.reads(LOT)
    rig.w.housekeeping()
    wait_for(lambda: board.state()["alerts"] == [], 5, what="the alerts closed")
    assert factory.pin(26).state is False
    store = WarehouseStore(rig.tmp_path / "warehouse.sqlite", readonly=True)
    assert store.acks() == [] and store.alert_rows() == []
    store.close()


def test_nothing_acts_without_the_session_or_from_another_site(breached):
    rig, board = breached
    board.open_page()
    assert board.act("/sign-in", {"staff": "W-07"})[0] == 200
    rig.leave_with(LOT[2:] + OTHER)
    seq = rig.events("custody.breach")[0]["seq"]
    body = {"alert_seq": seq, "note": "forged"}
    assert board.act("/acknowledge", body, Origin="http://evil.example")[0] == 403
    assert board.act("/acknowledge", body, **{"Sec-Fetch-Site": "cross-site"})[0] == 403
    assert board.act("/acknowledge", body, **{"X-Cocoon-Token": "guess"})[0] == 403
    assert board.act("/acknowledge", body, Cookie="cocoon_screen=stolen")[0] == 403
    assert board.act("/acknowledge", body, **{"Content-Type": "text/plain"})[0] == 415
    status, _, _ = board.request("GET", "/", headers={"Host": "evil.example:80"})
    assert status == 421                                    # no DNS rebinding
    assert board.request("GET", "/acknowledge")[0] == 405
    assert board.request("GET", "/farmer")[0] == 404         # no clerk's page here
    # A new page is a new session: it is not signed in.
    other = Dashboard.__new__(Dashboard)
    other.__dict__.update(board.__dict__)
    other.open_page()
    assert other.act("/acknowledge", body)[0] == 403
    assert rig.events("alert.acknowledged") == []


def test_climate_history_and_the_stale_banner(breached):
    rig, board = breached
    rig.w.poll_climate()
    status, _, body = board.request("GET", "/climate")
    doc = json.loads(body)
    assert status == 200 and len(doc["points"]) == 1
    assert doc["points"][0][1:] == [21.5, 65.0] and doc["rh_low"] == 60.0
    assert doc["to"] - doc["from"] == pytest.approx(24 * 3600, abs=5)
    rig.w.housekeeping()
    assert board.state()["stale"] is False
    store = WarehouseStore(rig.tmp_path / "warehouse.sqlite")
    store.set_meta("alive", str(time.time() - 60))      # the housekeeping stopped a minute ago
    store.close()
    rig.w._touch()
    wait_for(lambda: board.state()["stale"], 5, what="stale data flagged")


def test_zh_cn_is_the_default_language(tmp_path, make_outbox, factory):
    rig = Rig(tmp_path, make_outbox(), factory)
    board = Dashboard(rig, "zh-CN")
    try:
        page = board.open_page()
        assert '<html lang="zh-CN">' in page and "仓库" in page
        rig.reader.reads(LOT + OTHER)
        rig.receive()
        rig.pledge()
        rig.leave_with(LOT[2:] + OTHER)
        wait_for(lambda: board.state()["alerts"], 5, what="the alerts")
        titles = {a["kind"]: a["title"] for a in board.state()["alerts"]}
        assert titles["custody.breach"] == "质押货包未经放行离库"
        assert "标签重新被读到时警报解除" in board.state()["alerts"][0]["advice"]
    finally:
        board.close()
        rig.close()


def test_the_doctor_finds_the_dashboard_answering(breached):
    from agent.fleet.doctor_checks import Status, check_screen

    _, board = breached
    result = check_screen(ScreenConfig("127.0.0.1", board.port, "en"))
    assert result.status is Status.OK, result
    assert check_screen(ScreenConfig("127.0.0.1", board.port, "zh-CN")).status is Status.WARN


def test_the_light_and_siren_follow_open_alerts_across_a_restart(tmp_path, make_outbox,
                                                                 factory):
    """A reader outage lights the light without the siren; a breach sounds the siren too.
    After a restart with the breach still open the light is on again at once, and the siren
    is not sounded a second time for the same alert."""
    outbox = make_outbox()
    rig = Rig(tmp_path, outbox, factory, siren_s=0.3)
    rig.reader.reads(LOT + OTHER)
    rig.receive()
    rig.pledge()
    assert factory.pin(26).state is False and factory.pin(19).state is False
    rig.reader.health(False, "cable pulled")
    wait_for(lambda: rig.events("reader.offline"), 2, what="the outage")
    assert factory.pin(26).state is True and factory.pin(19).state is False
    rig.reader.health(True, "connected")
    wait_for(lambda: factory.pin(26).state is False, 2, what="the light off")
    rig.leave_with(LOT[2:] + OTHER)
    assert factory.pin(19).state is True and factory.pin(26).state is True
    wait_for(lambda: factory.pin(19).state is False, 3, what="the siren's end")
    rig.close()
    factory.reset()
    again = Rig(tmp_path, outbox, factory, siren_s=0.3, start=False)
    assert factory.pin(26).state is False       # before the service starts
    again.start()
    try:
        assert factory.pin(26).state is True
        time.sleep(0.1)
        assert factory.pin(19).state is False
    finally:
        again.close()


def test_every_word_of_the_dashboard_has_its_chinese():
    from babel.messages.pofile import read_po

    from agent.screen.i18n import LOCALE_DIR

    with open(LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "dashboard.po", "rb") as f:
        catalog = read_po(f)
    with open(LOCALE_DIR / "dashboard.pot", "rb") as f:
        template = read_po(f)
    wanted = {m.id for m in template if m.id}
    assert wanted and wanted <= {m.id for m in catalog if m.id and m.string}
    source = (LOCALE_DIR.parent / "dashboard.py").read_text(encoding="utf-8")
    said = set(re.findall(r'_\(\s*"((?:[^"\\]|\\.)*)"\s*\)', source))
    assert said and {s for s in said if "\n" not in s} <= wanted     # the template is current


def test_the_dashboard_on_the_network_waits_behind_the_login(tmp_path, make_outbox, factory):
    """A monitor's office PC reaches the dashboard over TLS, after the device's password; the
    acknowledgement's same-origin check holds over https."""
    from tests.test_screen_remote import NAME, PASSWORD, Tablet, technician

    rig = Rig(tmp_path, make_outbox(), factory)
    technician(tmp_path)
    board = Dashboard(rig, config=ScreenConfig("0.0.0.0", 0, "zh-CN", (NAME,), 0))
    try:
        port = board.part.remote.port
        tablet = Tablet(port, tmp_path / "screen" / "tls.pem")
        status, headers, _ = tablet.request("GET", "/dashboard")
        assert status == 303 and headers["Location"] == "/login?next=/dashboard"
        assert tablet.request("GET", "/climate")[0] == 401
        form = {"Origin": f"https://{NAME}:{port}",
                "Content-Type": "application/x-www-form-urlencoded"}
        status, headers, _ = tablet.request("POST", "/login",
                                            f"password={PASSWORD}&next=/dashboard", **form)
        assert status == 303 and headers["Location"] == "/dashboard"
        status, headers, page = tablet.request("GET", "/dashboard")
        assert status == 200 and '<html lang="zh-CN">' in page
        token = re.search(r'name="cocoon-token" content="([^"]+)"', page).group(1)
        act = {"Content-Type": "application/json", "X-Cocoon-Token": token,
               "Sec-Fetch-Site": "same-origin"}
        body = json.dumps({"staff": "W-07"})
        assert tablet.request("POST", "/sign-in", body, **act,
                              Origin=f"http://{NAME}:{port}")[0] == 403     # not this origin
        status, _, reply = tablet.request("POST", "/sign-in", body, **act,
                                          Origin=f"https://{NAME}:{port}")
        assert status == 200 and json.loads(reply)["staff"] == "W-07"
    finally:
        board.close()
        rig.close()

"""The warehouse monitor's dashboard in a real Chromium, through a custody breach: the alert
appears with what to do, the siren sounds, the monitor signs in and acknowledges it with a
note by touch (a signed `alert.acknowledged`; the alert stays open), every control inside a
7-inch 800x480 screen, screenshots at 800x480 and 1920x1080 (tests/artefacts/).

In Chinese against the warehouse demo (`scripts/demo-warehouse`: the agent, the tag module
simulator on a pty, mock pins, the broker and the bank's ingest as processes), whose ingest
verifies the acknowledgement's signature; in English against the warehouse service in this
process, whose mock siren pin is read directly."""

from __future__ import annotations

import json
import queue
import re
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing

import pytest

from agent.contract.chain import check_capture
from agent.contract.signing import Verifier
from tests.support.browser import OUTSIDE_VIEWPORT_JS, chromium, need_chromium, screenshot
from tests.test_dashboard import Dashboard, factory  # noqa: F401 (a fixture)
from tests.test_warehouse_scenarios import LOT, OTHER, Rig

DEV = "warehouse-01"


def inside(page, step: str) -> None:
    outside = page.evaluate(OUTSIDE_VIEWPORT_JS)
    assert outside == [], f"{step}: controls outside the 800x480 screen: {outside}"


def acknowledge(page, kind: str, staff: str, note: str) -> int:
    """Sign in and acknowledge the first alert of `kind` by touch; its alert_seq."""
    alert = page.locator(f'li.alert[data-kind="{kind}"]').first
    seq = int(alert.get_attribute("data-seq"))
    alert.locator("button.ack").tap()
    assert page.is_visible("#ack-dialog") and page.is_visible("#ack-signin")
    assert page.is_disabled("#ack-send")                  # not signed in yet
    inside(page, "acknowledge, signed out")
    page.tap("#ack-signin")
    page.fill("#staff-id", staff)
    page.tap("#signin-send")
    page.wait_for_function("document.body.dataset.staff !== ''", timeout=5000)
    assert not page.is_disabled("#ack-send")
    page.fill("#ack-note", note)
    page.tap('#presets button[data-key="preset_bank"]')
    inside(page, "acknowledge, signed in")
    page.tap("#ack-send")
    page.wait_for_function("document.getElementById('ack-dialog').hidden", timeout=5000)
    page.wait_for_function(
        f"[...document.querySelectorAll('li.alert[data-seq=\"{seq}\"] .a-ack')]"
        f".some(e => e.textContent.includes({staff!r}))", timeout=5000)
    return seq


class Demo:
    """scripts/demo-warehouse as a process, its lines read as they come."""

    def __init__(self, root):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.demo.warehouse", "--dir", str(root), "--duration",
             "90"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        for line in self.seen:
            m = re.search(pattern, line)
            if m:
                return m
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            m = re.search(pattern, line)
            if m:
                return m
        raise AssertionError(f"no line {pattern!r} from the demo:\n" + "\n".join(self.seen))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()           # the demo stops its processes on SIGTERM
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def test_the_dashboard_through_a_breach_in_chinese_against_the_demo(tmp_path):
    need_chromium()
    demo = Demo(tmp_path / "demo")
    try:
        url = demo.wait_line(r"^dashboard: (http://127\.0\.0\.1:\d+/)", 60).group(1)
        with chromium() as browser:
            ctx = browser.new_context(viewport={"width": 800, "height": 480}, has_touch=True,
                                      bypass_csp=True)     # for the test's own probes
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            deadline = time.monotonic() + 30
            while True:                     # the agent serves it a moment after it starts
                try:
                    page.goto(url)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
            assert page.evaluate("document.documentElement.lang") == "zh-CN"
            page.wait_for_selector('li.alert[data-kind="custody.breach"]', timeout=60000)
            breach = page.locator('li.alert[data-kind="custody.breach"]').first
            assert "质押货包未经放行离库" in breach.inner_text()
            assert "怎么办" in breach.inner_text() and "标签重新被读到" in breach.inner_text()
            page.wait_for_function("document.body.dataset.short === '1'", timeout=10000)
            assert "正在鸣响" in page.inner_text('#site li[data-kind="siren"]')
            assert "亮" in page.inner_text('#site li[data-kind="light"]')
            assert page.evaluate("document.fonts.check('16px CocoonCJK', '质押货包')")
            page.wait_for_function("Number(document.getElementById('chart').dataset.points) > 0",
                                   timeout=10000)
            inside(page, "breach")
            screenshot(page, "dashboard-zh-CN-800x480-breach")

            seq = acknowledge(page, "custody.breach", "W-07", "后门开着")
            assert page.locator(f'li.alert[data-seq="{seq}"]').count() == 1   # still open
            m = demo.wait_line(rf"verified {DEV} seq (\d+) alert\.acknowledged", 30)
            assert int(m.group(1)) > seq
            screenshot(page, "dashboard-zh-CN-800x480-acknowledged")
            big = browser.new_context(viewport={"width": 1920, "height": 1080})  # CSP as is
            wide = big.new_page()
            refused: list[str] = []
            wide.on("console", lambda msg: refused.append(msg.text)
                    if "Content Security Policy" in msg.text else None)
            wide.goto(url)
            wide.wait_for_selector(f'li.alert[data-seq="{seq}"] .a-ack', timeout=10000)
            wide.wait_for_selector("#chart polyline.rh", state="attached", timeout=10000)
            screenshot(wide, "dashboard-zh-CN-1920x1080")
            assert refused == []
            assert errors == []
    finally:
        demo.stop()
    # The bank's ingest holds it as the device signed it, verified against its key alone.
    store = tmp_path / "demo" / "ingest" / "ingest.sqlite"
    with closing(sqlite3.connect(store)) as conn:
        rows = [r[0] for r in conn.execute("SELECT payload FROM events WHERE device=? "
                                           "ORDER BY seq", (DEV,))]
    payloads = [r if isinstance(r, str) else r.decode() for r in rows]
    (ack,) = [json.loads(p) for p in payloads if '"alert.acknowledged"' in p]
    assert ack["body"]["alert_seq"] == seq and ack["body"]["staff"] == "W-07"
    assert ack["body"]["note"] == "后门开着; 已通知银行监管员"
    assert ack["body"]["alert"] == "custody.breach"
    report = check_capture(payloads, Verifier.from_file(
        tmp_path / "demo" / "ingest" / "devices" / f"{DEV}.pem"))
    assert report.ok, report.problems


@pytest.fixture
def rig(tmp_path, make_outbox, factory):  # noqa: F811
    r = Rig(tmp_path, make_outbox(), factory)
    r.reader.reads(LOT + OTHER)
    r.receive()
    r.pledge()
    yield r
    r.close()


def test_the_dashboard_through_a_breach_in_english(rig, factory, signer):  # noqa: F811
    need_chromium()
    board = Dashboard(rig, "en")
    try:
        with chromium() as browser:
            ctx = browser.new_context(viewport={"width": 800, "height": 480}, has_touch=True,
                                      bypass_csp=True)     # for the test's own probes
            page = ctx.new_page()
            page.goto(board.part.url)
            assert page.evaluate("document.documentElement.lang") == "en"
            page.wait_for_function("document.body.dataset.alerts === '0'", timeout=5000)
            assert page.is_visible("#no-alerts") and factory.pin(19).state is False
            rig.leave_with(LOT[2:] + OTHER)
            page.wait_for_selector('li.alert[data-kind="custody.breach"]', timeout=5000)
            assert factory.pin(19).state is True and factory.pin(26).state is True
            text = page.inner_text('li.alert[data-kind="custody.breach"]')
            assert "A pledged bale left without a release" in text and "What to do" in text
            assert "sounding" in page.inner_text('#site li[data-kind="siren"]')
            short = page.locator('#lots tr[data-lot="LOT-1"]')
            assert short.get_attribute("class") == "short"
            inside(page, "breach")
            screenshot(page, "dashboard-en-800x480-breach")
            seq = acknowledge(page, "custody.breach", "W-07", "back door open")
            (ack,) = rig.events("alert.acknowledged")
            assert ack["body"] == {"alert_seq": seq, "alert": "custody.breach",
                                   "note": "back door open; Bank's supervisor told",
                                   "staff": "W-07"}
            payloads = [s.payload for s in rig.outbox.pending(100_000)]
            assert check_capture(payloads, Verifier.from_pem(signer.public_key_pem())).ok
            assert page.locator(f'li.alert[data-seq="{seq}"]').count() == 1
            assert factory.pin(26).state is True                 # the light stays on
            page.set_viewport_size({"width": 1920, "height": 1080})
            screenshot(page, "dashboard-en-1920x1080")
            assert page.is_hidden("#stale")
            board.close()                   # the agent stops: the page says its data is stale
            page.wait_for_selector("#stale", state="visible", timeout=10000)
            assert "stopped reporting" in page.inner_text("#stale")
    finally:
        board.close()

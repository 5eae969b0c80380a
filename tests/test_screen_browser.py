"""The clerk's screen in a real Chromium, against a real station on simulated hardware: a
whole sale by touch in each language, with the faults a clerk must see (an unstable weight, a
refused grade, the link down, the card reader gone), every control inside a 7-inch 800x480
screen, the right `<html lang>`, the CJK font really used, and screenshots at 800x480 and
1920x1080 (tests/artefacts/)."""

from __future__ import annotations

import json
import re

import pytest

from agent.contract.legal import running_legal_id
from tests.support.browser import OUTSIDE_VIEWPORT_JS, chromium, need_chromium, screenshot
from tests.support.running import ingest_query
from tests.support.screen_station import start_screen_station
from tests.support.waiting import wait_for

pytest_plugins = ("tests.support.pty",)

WORDS = {   # what the page must say, by language
    "en": {"idle": "staff card", "unstable": "Not stable", "refused": "Grading refused",
           "range": "Out of range", "link_advice": "No link to the bank", "voided": "voided"},
    "zh-CN": {"idle": "工卡", "unstable": "未稳定", "refused": "定级被拒",
              "range": "超出范围", "link_advice": "与银行的连接中断", "voided": "已作废"},
}
GOOD = {"shell_g": "9.6", "moisture_pct": "15", "reelable_pct": "100"}


def phase(page) -> str:
    return page.evaluate("document.body.dataset.phase || ''")


def wait_phase(page, wanted: str, timeout_ms: int = 15000) -> None:
    page.wait_for_function(f"document.body.dataset.phase === {wanted!r}", timeout=timeout_ms)


def inside(page, step: str) -> None:
    outside = page.evaluate(OUTSIDE_VIEWPORT_JS)
    assert outside == [], f"{step}: controls outside the 800x480 screen: {outside}"


def type_value(page, name: str, value: str) -> None:
    page.tap(f'button.field[data-name="{name}"]')
    current = page.locator(f'button.field[data-name="{name}"] .f-value').inner_text()
    for _ in range(len(current.split()[0]) if current.split()[:-1] else 0):
        page.tap('#keypad [data-key="back"]')
    for key in value:
        page.tap(f'#keypad [data-key="{key}"]')


def fill_grade(page, values: dict) -> None:
    names = page.eval_on_selector_all("button.field", "els => els.map(e => e.dataset.name)")
    for name in names:
        type_value(page, name, values.get(name, "0"))


def cjk_font_used(page, selector: str) -> list[str]:
    """The platform fonts Chromium drew the element's text with (DevTools protocol)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    return [f["familyName"] for f in fonts]


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_a_whole_sale_by_touch(site, services, pty_pair, tmp_path, virtual_card, pcscd,
                               language):
    need_chromium()
    words = WORDS[language]
    st = start_screen_station(site, services, pty_pair, tmp_path, virtual_card,
                              language=language, settle_s=2.0)
    with chromium() as browser:
        clerk_ctx = browser.new_context(viewport={"width": 800, "height": 480}, has_touch=True,
                                        bypass_csp=True)
        page = clerk_ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(st.url)
        assert page.evaluate("document.documentElement.lang") == language
        wait_phase(page, "idle")
        assert words["idle"] in page.inner_text("#instruction")
        if language == "zh-CN":
            page.evaluate("document.fonts.ready")
            assert page.evaluate("document.fonts.check('20px CocoonCJK', '蚕茧收购')")
            assert any("CJK" in f for f in cjk_font_used(page, "#instruction")), \
                cjk_font_used(page, "#instruction")
        inside(page, "idle")
        screenshot(page, f"screen-{language}-800x480-idle")

        with st.staff:
            wait_phase(page, "ready")
        inside(page, "ready")
        st.farmer.insert()
        wait_phase(page, "weighing")
        assert "Zhang" in page.inner_text("#farmer-line") or page.inner_text("#farmer-line")
        st.sim.set_target("52.40")                  # 2 s of a moving load: not stable
        page.wait_for_function(
            f"document.getElementById('stable-mark').textContent.includes({words['unstable']!r})",
            timeout=5000)
        inside(page, "weighing")
        screenshot(page, f"screen-{language}-800x480-weighing")
        wait_phase(page, "grading")

        fields = page.eval_on_selector_all("button.field", "els => els.map(e => e.dataset.name)")
        assert fields[0] == "shell_g" and "moisture_pct" in fields and \
            "defects_pct.mouldy" in fields
        hint = page.locator('button.field[data-name="shell_g"] .f-hint').inner_text()
        assert "0" in hint and "50" in hint                       # its range: the sample's 50 g
        assert page.locator('button.field[data-name="shell_g"] .f-value').inner_text().endswith("g")
        type_value(page, "shell_g", "99")                          # beyond the sample: refused
        assert words["range"] in page.locator(
            'button.field[data-name="shell_g"] .f-hint').inner_text()
        assert page.is_disabled("#price-it")
        inside(page, "grading")
        fill_grade(page, {**GOOD, "shell_g": "1"})                # a grade no price covers
        screenshot(page, f"screen-{language}-800x480-grading")
        page.tap("#price-it")
        page.wait_for_function("document.getElementById('message').classList.contains("
                               "'refused')", timeout=5000)
        assert words["refused"] in page.inner_text("#message")
        assert phase(page) == "grading"
        type_value(page, "shell_g", "9.6")
        page.tap("#price-it")
        wait_phase(page, "confirming")
        amount = page.inner_text("#amount-big")
        assert re.fullmatch(r"[0-9,]+\.[0-9]{2}", amount), amount
        breakdown = page.inner_text("#breakdown")
        assert "52.000" in breakdown                                # the net weight
        inside(page, "confirming")
        screenshot(page, f"screen-{language}-800x480-confirming")

        farmer_ctx = browser.new_context(viewport={"width": 1920, "height": 1080}, bypass_csp=True)
        farmer = farmer_ctx.new_page()
        farmer.goto(st.url + "farmer")
        farmer.wait_for_function(
            f"document.getElementById('f-amount').textContent === {amount!r}", timeout=5000)
        assert farmer.evaluate("document.documentElement.lang") == language
        box = farmer.locator("#f-amount").bounding_box()           # the amount in full view
        assert box["y"] >= 0 and box["y"] + box["height"] <= 1080, box
        screenshot(farmer, f"farmer-{language}-1920x1080")
        farmer.set_viewport_size({"width": 800, "height": 480})      # a 7-inch farmer's display
        box = farmer.locator("#f-amount").bounding_box()
        assert box["y"] + box["height"] <= 480 and box["x"] + box["width"] <= 800, box
        screenshot(farmer, f"farmer-{language}-800x480")
        big = browser.new_context(viewport={"width": 1920, "height": 1080}, has_touch=True,
                                  bypass_csp=True)
        wide = big.new_page()
        wide.goto(st.url)
        wide.wait_for_function("document.body.dataset.phase === 'confirming'", timeout=5000)
        screenshot(wide, f"screen-{language}-1920x1080-confirming")

        assert errors == []
        assert phase(page) == "confirming", st.part.message
        page.tap("#confirm-btn")
        page.wait_for_function("!document.getElementById('voucher').hidden", timeout=15000)
        voucher = page.inner_text("#voucher-line")
        assert "station-01-" in voucher and amount in voucher
        number = re.search(r"station-01-[0-9]{8}-([0-9]{4})", voucher).group(1)
        st.farmer.remove()
        page.tap("#sales-open")
        wait_for(lambda: number in page.inner_text("#sales-table") or None, 5,
                 what="the sale in today's sales")
        assert "1" in page.inner_text("#sales-total")
        # the legally relevant software identifies itself on the clerk's request
        assert f"legal {running_legal_id()}" in page.inner_text("#software")
        inside(page, "sales")
        screenshot(page, f"screen-{language}-800x480-sales")
        # A clerk is offered no void; a supervisor's card brings it, with the reasons to choose.
        assert page.locator("#sales-table button.void").count() == 0
        assert page.is_visible("#supervisor-only")
        page.tap("#sales-close")
        with st.supervisor:
            page.wait_for_function("document.querySelector('#sales-table button.void')",
                                   timeout=10000)
        page.tap("#sales-open")
        page.tap("#sales-table button.void")
        assert number in page.inner_text("#why-title")
        inside(page, "why")
        screenshot(page, f"screen-{language}-800x480-void-why")
        page.tap("#why-reasons button >> nth=0")                 # wrong weight
        # Recorded and at the bank (the outbox forgets an event once the bank has it).
        voided = "SELECT payload FROM events WHERE type = 'purchase.voided'"
        wait_for(lambda: ingest_query(st.site, voided) or None, 15, what="the void at the bank")
        (payload,), = ingest_query(st.site, voided)
        assert json.loads(bytes(payload))["body"]["reason"] == "wrong weight"
        page.tap("#sales-open")
        page.wait_for_function(f"document.getElementById('sales-table').textContent"
                               f".includes({words['voided']!r})", timeout=10000)
        page.tap("#sales-close")

        st.site.broker.stop()                                      # the link goes down
        page.wait_for_function("document.querySelector('.chip[data-part=link]')"
                               ".classList.contains('bad')", timeout=20000)
        assert words["link_advice"] in page.inner_text("#faults")
        pcscd.stop()                                               # the card reader goes
        page.wait_for_function("document.querySelector('.chip[data-part=reader]')"
                               ".classList.contains('bad')", timeout=20000)
        inside(page, "faults")
        screenshot(page, f"screen-{language}-800x480-faults")

"""Debian's Chromium driven by Playwright, for the tests of pages.

Playwright's Python package carries its own driver; the browser is the system's
(`/usr/bin/chromium`, no download). Without it the tests skip, and fail where the parts are
required (`COCOON_REQUIRE_PARTS=1`, set by CI). Screenshots go to tests/artefacts/ (ignored by
git), which CI may keep.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("COCOON_CHROMIUM", "/usr/bin/chromium")
ARTEFACTS = Path(__file__).resolve().parents[1] / "artefacts"
FLAGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-gpu", "--disable-dev-shm-usage"]

# Every control a finger may need, checked against the viewport in the page.
OUTSIDE_VIEWPORT_JS = """() => {
  const out = [];
  for (const el of document.querySelectorAll("button, input, select, a[href]")) {
    if (el.closest("[hidden]") || !el.getClientRects().length) continue;
    const r = el.getBoundingClientRect();
    if (r.left < 0 || r.top < 0 || r.right > innerWidth + 0.5 || r.bottom > innerHeight + 0.5)
      out.push(`${el.id || el.dataset.name || el.textContent.trim()}: ` +
               `${Math.round(r.left)},${Math.round(r.top)}-${Math.round(r.right)},` +
               `${Math.round(r.bottom)}`);
  }
  return out;
}"""


def require_part(what: str) -> None:
    """Skip for want of `what`, or fail when the parts are required."""
    if os.environ.get("COCOON_REQUIRE_PARTS") == "1":
        pytest.fail(f"{what} is required (COCOON_REQUIRE_PARTS=1): run scripts/bootstrap")
    pytest.skip(f"{what} is missing (scripts/bootstrap installs it)")


def need_chromium() -> None:
    """Skip (or fail, where parts are required) without Chromium or Playwright."""
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        require_part(f"Chromium ({CHROMIUM})")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require_part("Playwright's Python package")


@contextmanager
def chromium(*args: str):
    """A headless Chromium (with `args` beside the usual flags), closed (and its processes
    ended) at the end."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[*FLAGS, *args], headless=True)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    ARTEFACTS.mkdir(exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path

"""The HTML report in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright.

Skips with the reason where Playwright or Chromium is missing, unless LMFN_REQUIRE_BROWSER=1
(set by .ci/run, which installs chromium): there a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from lmfn_cli.batch import BatchOptions, run_batch
from test_report import make_batch

CHROMIUM = os.environ.get("LMFN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _need(what: str) -> None:
    if os.environ.get("LMFN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{what} (LMFN_REQUIRE_BROWSER=1: CI must run this test)")
    pytest.skip(what)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("Playwright is not installed (pip install playwright; no browser download is needed)")
    if not CHROMIUM:
        _need("no chromium on PATH (apt install chromium, or set LMFN_CHROMIUM)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])  # root in CI containers
        yield b
        b.close()


@pytest.fixture
def report(tmp_path, tiny_model) -> Path:
    blur, sharp = make_batch(tmp_path, size=(120, 160))
    path = tmp_path / "out" / "report.html"
    list(run_batch([str(blur)], tmp_path / "out", BatchOptions(gt_dir=sharp, html=path), model=tiny_model))
    return path


def _open(browser, url: str, **context):
    page = browser.new_context(**context).new_page()
    problems, requests = [], []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    page.wait_for_load_state("load")
    return page, problems, requests


def test_the_report_works_offline_in_chromium(browser, report, tmp_path):
    url = report.as_uri()
    page, problems, requests = _open(browser, url, viewport={"width": 1100, "height": 900})
    # every image decodes (the 200% crops get their picture from the script)
    sizes = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(sizes) > 10 and all(c and w > 0 and h > 0 for c, w, h in sizes), sizes
    # dragging the divider changes what is visible
    box = page.locator(".compare").first
    box.scroll_into_view_if_needed()
    bb = box.bounding_box()
    before = box.screenshot()
    assert page.evaluate("getComputedStyle(document.querySelector('.compare')).getPropertyValue('--pos')").strip() == "50%"
    page.mouse.move(bb["x"] + bb["width"] * 0.5, bb["y"] + bb["height"] / 2)
    page.mouse.down()
    page.mouse.move(bb["x"] + bb["width"] * 0.1, bb["y"] + bb["height"] / 2, steps=5)
    page.mouse.up()
    pos = float(page.evaluate("getComputedStyle(document.querySelector('.compare')).getPropertyValue('--pos')").strip(" %"))
    assert 5 < pos < 15 and box.screenshot() != before
    # and so does the keyboard, on the slider under it
    slider = page.locator("input.slider").first
    slider.focus()
    page.keyboard.press("End")
    assert page.evaluate("getComputedStyle(document.querySelector('.compare')).getPropertyValue('--pos')").strip() == "100%"
    assert page.evaluate("document.activeElement.classList.contains('slider')")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    # nothing left the page: the only request is the file itself (data: images are not fetched)
    assert [u for u in requests if not u.startswith("data:")] == [url], requests
    assert problems == [], problems


def test_the_report_fits_a_phone(browser, report):
    page, problems, _ = _open(browser, report.as_uri(), viewport={"width": 390, "height": 844}, device_scale_factor=2,
                              is_mobile=True, has_touch=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    assert problems == []


def test_the_policy_blocks_anything_added_from_outside(browser, report, tmp_path):
    # an image or script from the network, were one ever written into the page, is refused
    hostile = tmp_path / "hostile.html"
    html = report.read_text().replace("</main>", '<img id="x" src="http://127.0.0.1:9/x.png"></main>')
    hostile.write_text(html)
    context = browser.new_context()
    page = context.new_page()
    problems, answered, failed = [], [], []
    page.on("console", lambda m: problems.append(m.text))
    page.on("response", lambda r: answered.append(r.url))
    page.on("requestfailed", lambda r: failed.append((r.url, r.failure)))
    page.goto(hostile.as_uri())
    page.wait_for_load_state("load")
    assert not any(u.startswith("http") for u in answered)
    assert ("http://127.0.0.1:9/x.png", "csp") in failed, failed  # refused by the policy, never sent
    assert any("Content Security Policy" in p for p in problems), problems

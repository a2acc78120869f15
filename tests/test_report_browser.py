"""The report in a real browser: every section visible, plots laid out, no console errors, no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from medfuse.evaluate.report import SECTIONS, write_report
from tests.report_fixture import build_results

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]


def test_report_renders_offline_in_headless_chromium(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium; `make` installs it in CI)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    report = write_report(build_results(), tmp_path / "eval")
    screenshot = tmp_path / "report.png"
    blocked: list[str] = []
    seen: list[str] = []
    console: list[str] = []
    page_errors: list[str] = []

    def guard(route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", guard)
            page.on("request", lambda request: seen.append(request.url))
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}")
                    if message.type in ("error", "warning") else None)
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(report.as_uri(), wait_until="load")
            for spec in SECTIONS:
                section = page.locator(f"section#{spec.id}")
                assert section.count() == 1, spec.id
                assert section.is_visible(), spec.id
                box = section.bounding_box()
                assert box is not None and box["width"] > 0 and box["height"] > 0, spec.id
            sizes = page.eval_on_selector_all(
                "svg.chart", "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; })")
            assert len(sizes) >= 10 and all(w > 50 and h > 50 for w, h in sizes), sizes
            images = page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
            assert len(images) == 6 and all(width == 64 for width in images), images
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()

    assert blocked == [], f"the report asked the network for {blocked}"
    assert all(url.startswith(("file:", "data:")) for url in seen), seen
    assert console == [] and page_errors == [], console + page_errors
    shot = np.asarray(Image.open(screenshot).convert("L"), dtype=np.float64)
    assert shot.shape[1] == 1280 and shot.shape[0] > 3000  # every section laid out, one under another
    assert shot.std() > 20  # not a blank page

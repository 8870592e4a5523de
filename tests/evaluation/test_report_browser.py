"""The report in a real browser: Debian Chromium via Playwright renders report.html from disk.

Chromium is started with the network off the table (no sandbox, no GPU, no background
networking) and every request that is not the file itself is recorded: a self-contained report
makes none. The test checks that each embedded image decoded (naturalWidth > 0) and that the
summary tables and plots are laid out.
"""

from __future__ import annotations

import pytest

from tests.labeling_app.live_server import launch_chromium, needs_chromium

pytestmark = needs_chromium


def _check_page(page, path, n_images: int) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    assert requests == [path.as_uri()]  # nothing fetched besides the file itself
    widths = page.eval_on_selector_all("img", "els => els.map(e => e.complete && e.naturalWidth)")
    assert len(widths) == n_images and all(w > 0 for w in widths)
    assert page.locator("table.summary").count() >= 3
    box = page.locator("table.summary").first.bounding_box()
    assert box["width"] > 100 and box["height"] > 20
    assert page.locator("svg.chart").count() >= 3
    assert page.locator("svg.chart rect").count() > 0


def test_report_and_comparison_render_in_chromium(ab_run, solo_run, tmp_path):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    from evaluation.compare import compare_runs

    compare_runs(ab_run, solo_run, tmp_path / "cmp")
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            _check_page(page, ab_run / "report.html", n_images=6)
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            _check_page(page, tmp_path / "cmp" / "report.html", n_images=6)
        finally:
            browser.close()

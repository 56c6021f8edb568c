"""Headless Chromium for tests that open a page: Debian's /usr/bin/chromium driven by Playwright.

`.ci/run` installs the browser (apt package `chromium`); Playwright never downloads one. Outside
CI a machine without it skips such tests, naming the package; under CI=true a missing browser
fails the test, so CI cannot pass without having opened the page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PLOT_SELECTOR = ".js-plotly-plot"
PNG = b"\x89PNG\r\n\x1a\n"


def require_chromium() -> None:
    """Skip (outside CI) or fail (under CI=true) when Debian's chromium is not installed."""
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is absent: `apt-get install -y chromium` (.ci/run installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class OpenedPage:
    """What a person would see of a page: console errors, plots drawn, a screenshot."""

    errors: list[str] = field(default_factory=list)
    plots: int = 0
    drawn: list[int] = field(default_factory=list)  # traces drawn inside each plot
    screenshot: bytes = b""
    requests: list[str] = field(default_factory=list)  # anything fetched beyond the file


def open_page(path: Path, expected_plots: int, timeout_ms: float = 30_000) -> OpenedPage:
    """Open a local HTML file, wait until `expected_plots` plotly plots have drawn, and take a
    full-page screenshot."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    seen = OpenedPage()
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                         headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error"
                    else None)
            page.on("pageerror", lambda e: seen.errors.append(str(e)))
            page.on("request", lambda r: seen.requests.append(r.url)
                    if not r.url.startswith(("file:", "data:", "blob:")) else None)
            page.goto(path.resolve().as_uri(), wait_until="load", timeout=timeout_ms)
            page.wait_for_function(
                f"document.querySelectorAll('{PLOT_SELECTOR} svg.main-svg').length >= "
                f"{expected_plots}", timeout=timeout_ms)
            seen.plots = page.locator(PLOT_SELECTOR).count()
            seen.drawn = page.evaluate(
                f"[...document.querySelectorAll('{PLOT_SELECTOR}')].map(p => "
                "p.querySelectorAll('.scatterlayer .trace, .barlayer .trace').length)")
            seen.screenshot = page.screenshot(full_page=True)
        finally:
            browser.close()
    return seen

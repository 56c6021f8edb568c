"""The model report's HTML page, opened in headless Chromium: every plot draws, offline, cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedcredit.report.bank import write_report
from fedcredit.report.html import plot_ids, render_html
from models.report import validation_report
from tests.headless import PNG, open_page


def _report(population: bool) -> dict[str, object]:
    rng = np.random.default_rng(3)
    n = 2500
    tier = rng.integers(1, 4, n)
    logit = rng.normal(size=n) - 1.8 + 0.2 * tier
    y = (rng.random(n) < 1 / (1 + np.exp(-(logit + rng.normal(size=n))))).astype(int)
    pd = 1 / (1 + np.exp(-logit))
    return validation_report(
        y, pd, points=600 - 28.85 * np.log(pd / (1 - pd)),
        segments={"tier": {str(t): tier == t for t in (1, 2, 3)}},
        population=pd[:800] * 1.4 if population else None,
        about={"model_id": "m-<v1>", "algorithm": "vlr", "job": "job-1",
               "rows_note": "validation rows", "stability_note": None if population else
               "no scoring population: give --population"})


@pytest.mark.parametrize("population", [True, False], ids=["with-psi", "without-psi"])
def test_every_plot_renders_in_headless_chromium(tmp_path: Path, population: bool) -> None:
    report = _report(population)
    json_path, html_path = tmp_path / "report.json", tmp_path / "report.html"
    write_report(report, json_path, html_path)
    expected = len(plot_ids(report))

    page = open_page(html_path, expected)

    assert expected == (6 if population else 5)
    assert page.errors == []
    assert page.requests == []  # plotly.js is inlined: nothing is fetched
    assert page.plots == expected
    assert all(traces >= 2 for traces in page.drawn), page.drawn  # each plot drew its lines
    assert page.screenshot.startswith(PNG) and len(page.screenshot) > 50_000
    assert json.loads(json_path.read_text())["auc"] == report["auc"]


def test_the_page_escapes_names_and_says_when_there_is_no_population() -> None:
    page = render_html(_report(False))
    assert "m-&lt;v1&gt;" in page and "m-<v1>" not in page
    assert "no scoring population" in page
    assert page.count('class="plotly-graph-div"') == 5


def test_a_missing_browser_skips_outside_ci_and_fails_under_ci(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import headless

    monkeypatch.setattr(headless, "CHROMIUM", Path("/nonexistent/chromium"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        headless.require_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chromium"):
        headless.require_chromium()

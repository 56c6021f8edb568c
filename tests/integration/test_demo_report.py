"""`fedcredit demo` end to end on a small chain: its report keys, and the LR model's HTML report
opened in headless Chromium (every plot drawn, no console error)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from fedcredit.demo.run import run_demo
from tests.headless import PNG, open_page, require_chromium

VLR_KEYS = {"auc", "ks", "auc_bank_only", "auc_centralized", "epochs", "seconds", "model_id",
            "segments", "gini", "validation_rows", "psi", "report_json", "report_html"}


SCORECARD_KEYS = {"auc", "auc_pooled", "auc_sklearn_pooled", "max_points_difference",
                  "characteristics", "iv_top10", "points_example", "base_points", "model_id",
                  "report_json", "report_html", "seconds"}


@pytest.mark.slow
def test_the_demo_writes_the_lr_model_report_and_it_renders(tmp_path: Path) -> None:
    require_chromium()  # before a minute of demo, not after
    report_path = tmp_path / "out" / "report.json"

    run_demo(report_path, enterprises=1500, seed=11, workdir=tmp_path / "work",
             console=Console(file=io.StringIO()))

    report = json.loads(report_path.read_text())
    lr = report["vertical_lr"]
    assert set(lr) >= VLR_KEYS
    assert {"scoring", "secureboost", "alignment", "parties", "seconds"} <= set(report)
    assert report["secureboost"]["ks"] is not None
    html_path, json_path = Path(lr["report_html"]), Path(lr["report_json"])
    assert html_path.parent == json_path.parent == report_path.parent
    model = json.loads(json_path.read_text())
    assert model["model_id"] == lr["model_id"] and model["rows"] == lr["validation_rows"]
    assert model["auc"] == pytest.approx(lr["auc"], abs=2e-3)  # the job's own, at its end
    assert model["gini"] == pytest.approx(lr["gini"], abs=1e-4)
    assert model["stability"]["psi"] == pytest.approx(lr["psi"], abs=1e-4)
    assert {"tier", "credit_white"} <= set(model["segments"])

    page = open_page(html_path, expected_plots=6)

    assert page.errors == [] and page.requests == []
    assert page.plots == 6 and min(page.drawn) >= 2
    assert page.screenshot.startswith(PNG) and len(page.screenshot) > 50_000

    card = report["scorecard"]
    assert set(card) >= SCORECARD_KEYS
    assert abs(card["auc"] - card["auc_pooled"]) <= 0.005 and card["max_points_difference"] < 0.5
    assert 0 < len(card["iv_top10"]) <= 10 and card["characteristics"]
    scorecard = json.loads(Path(card["report_json"]).read_text())
    assert scorecard["algorithm"] == "scorecard" and scorecard["scorecard"]["points"]
    page = open_page(Path(card["report_html"]), expected_plots=5)
    assert page.errors == [] and page.requests == [] and page.plots == 5
    assert page.screenshot.startswith(PNG) and len(page.screenshot) > 50_000

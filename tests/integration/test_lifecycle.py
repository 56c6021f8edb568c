"""The credit lifecycle through real processes: admission by strategy, a booked portfolio, the
feature nodes' data deteriorating for some SMEs, a review that warns about them and cuts lines."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console

from fedcredit.demo.lifecycle import run_lifecycle
from fedcredit.demo.parties import party_specs
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import synthesize
from proto.fedcredit.v1 import coordinator_pb2


def test_review_after_a_data_change_warns_and_moves_lines(tmp_path: Path) -> None:
    synth = synthesize(tmp_path / "data", enterprises=3000, seed=9)
    with LocalNetwork(tmp_path, party_specs(synth)) as net:
        net.start(timeout=120)
        stub = net.stub()
        stub.Align(coordinator_pb2.AlignRequest(label_party="bank", job_id="al"), timeout=300)
        stub.Train(coordinator_pb2.TrainRequest(algorithm="vlr", config_json=json.dumps(
            {"label": "bank", "features": ["core", "logistics", "tax"], "align_job": "al",
             "vlr": {"batch_size": 512, "max_epochs": 4, "learning_rate": 0.15}}),
            job_id="tr"), timeout=60)
        while (job := stub.GetJob(coordinator_pb2.GetJobRequest(job_id="tr"),
                                  timeout=30)).state == "running":
            time.sleep(0.3)
        assert job.state == "done", job
        report = run_lifecycle(net, synth, Console(quiet=True), seed=9)
    print(json.dumps(report, indent=1))
    admission, warning, review = report["admission"], report["early_warning"], report["review"]
    assert admission["booked"] > 300 and admission["rule_hits"]
    assert set(admission["outcomes"]) >= {"approve", "knock_out"}
    assert review["scored"] == admission["booked"]
    assert warning["recall"] >= 0.7, warning
    assert warning["healthy_flagged_share"] <= 0.1, warning
    assert warning["lines_cut_deteriorated"] > 0 and warning["lines_raised_improved"] > 0
    lines = (tmp_path / "state" / "bank" / "portfolio" / "alerts.jsonl").read_text().splitlines()
    alerts = [json.loads(a) for a in lines]
    scored = [a for a in alerts if a["type"] == "early_warning"]
    data = [a for a in alerts if a["type"] == "data_warning"]
    assert len(scored) == sum(review["alerts"].values())
    assert {a["action"] for a in scored} <= {"freeze_drawdowns", "cut_line", "call_margin"}
    # the feature nodes' own data alerts: one aggregate level per enterprise, naming no node
    assert report["data_change"]["parties_reloaded"] == {p: "loaded" for p in
                                                         ("core", "logistics", "tax")}
    figures = report["data_alerts"]
    assert len(data) == sum(review["data_alerts"].values()) > 0
    assert {a["source"] for a in data} == {"feature data"}
    assert all(set(a) == {"type", "review_id", "at", "enterprise_id", "level", "level_sum",
                          "source"} for a in data)
    assert figures["recall"] >= 0.8, figures
    assert figures["healthy_flagged_share"] <= 0.05, figures
    assert figures["combined_recall"] >= figures["recall"]
    assert set(figures["feature_psi"]) == {"core", "logistics", "tax"}
    assert figures["feature_psi"]["core"]["features"]["order_count"]["band"] in (
        "stable", "watch", "shifted")
    # the data alerts reach the policy's tiers: the worse of score and data decides the action
    assert {a["source"] for a in scored} <= {"score", "data", "both"}
    assert sum(review["alert_sources"].values()) == len(scored)
    assert review["alert_sources"]["data"] + review["alert_sources"]["both"] > 0
    assert figures["lines_cut_by_data"] == review["lines_cut_by_data"] >= (
        figures["lines_cut_by_data_deteriorated"] + figures["lines_cut_by_data_healthy"])
    assert figures["lines_cut_by_data_deteriorated"] > 0
    assert figures["lines_cut_by_data_healthy"] <= 0.05 * warning["healthy"]

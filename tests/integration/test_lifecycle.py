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
    alerts = (tmp_path / "state" / "bank" / "portfolio" / "alerts.jsonl").read_text().splitlines()
    assert len(alerts) == sum(review["alerts"].values())
    assert {json.loads(a)["action"] for a in alerts} <= {"freeze_drawdowns", "cut_line",
                                                         "call_margin"}

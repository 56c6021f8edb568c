"""SecureBoost through real processes: accuracy against XGBoost, and what crosses the wire."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedcredit.demo.parties import party_specs
from fedcredit.evaluate import compare_sbt, load_party_tables
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import synthesize
from proto.fedcredit.v1 import common_pb2, coordinator_pb2
from tests.integration.conftest import run_job, tapped_network
from tests.integration.give_credit import give_credit_specs

SBT_STEPS = ("public_context:", "histogram_request:", "histograms:", "split_request:",
             "partitions:", "topology:")


# A hang guard above the job's own (run_job: 900 s): the test takes 189 s quiet (221 s with a CI
# run beside it), which the suite's 600 s default leaves only 3.2x, too little on a machine 3x
# slower; 1500 s is 7.9x.
@pytest.mark.timeout(1500)
def test_give_credit_matches_xgboost(tmp_path: Path) -> None:
    """FATE's benchmark settings on the public data: 30 trees, depth 3, 32 bins, rate 0.3, under
    BFV through real node processes (the suite's one encrypted give_credit SecureBoost run)."""
    specs = give_credit_specs()
    settings = {"trees": 30, "depth": 3, "bins": 32, "learning_rate": 0.3}
    with LocalNetwork(tmp_path, specs) as net:
        net.start(timeout=120)
        net.stub().Align(coordinator_pb2.AlignRequest(label_party="bank", job_id="al"),
                         timeout=600)
        job = run_job(net.stub(), "gc-sbt", "sbt", settings, model_name="")
        assert job.state == "done", job.error
        tables = load_party_tables({p.name: p.data for p in specs}, "bank")
        reference = compare_sbt(tmp_path / "state", tables, "bank", ["host"], "al", settings)
    auc = json.loads(job.metrics_json)["auc"]
    print(f"give_credit SecureBoost: federated {auc:.4f}, XGBoost {reference['auc_xgboost']:.4f}")
    assert abs(auc - reference["auc_xgboost"]) <= 0.005 and auc > 0.86


def test_boosting_traffic_is_sealed_and_thresholds_stay_home(tmp_path: Path) -> None:
    synth = synthesize(tmp_path / "data", enterprises=1500, seed=8)
    specs = party_specs(synth)
    with tapped_network(tmp_path, specs) as (net, tap):
        stub = net.stub()
        stub.Align(coordinator_pb2.AlignRequest(label_party="bank", job_id="al"), timeout=300)
        job = run_job(stub, "sbt-tap", "sbt", {"trees": 2, "depth": 3},
                      features=["core", "logistics", "tax"], model_name="")
        assert job.state == "done", job.error
        parts = [m.part for method, _, m in tap.messages
                 if method.endswith("RunStep") and isinstance(m, common_pb2.StepMessage)
                 and m.HasField("part")]
        names = {p.name.split(":")[0] + ":" for p in parts}
        assert {"histogram_request:", "histograms:", "split_request:", "partitions:"} <= names
        for_driver = ("report", "next_tree")  # L's tree report; each party's next tree (resume)
        for part in parts:
            assert part.name.startswith(SBT_STEPS) or part.name in for_driver, part.name
            if part.name not in for_driver:
                assert part.sealed and part.recipient != "coordinator", part.name
        # Every raw value a feature node could split on: none crosses the wire.
        tables = load_party_tables({s.name: s.data for s in specs}, "bank")
        blob = tap.blob()
        for name in ("core", "logistics", "tax"):
            values = np.unique(tables[name].X[np.isfinite(tables[name].X)])
            values = values[values != np.round(values)][:300]
            assert not [v for v in values if np.asarray(v, "<f8").tobytes() in blob]
        coordinator_state = net.workdir / "state" / "coordinator"
        assert not list(coordinator_state.glob("**/model*"))
        for name in ("core", "logistics", "tax"):  # each lookup table stays at its node
            assert (net.workdir / "state" / name / "models" / "sbt-tap" / "sbt_model.json").exists()

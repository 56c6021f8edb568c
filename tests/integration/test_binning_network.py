"""Federated binning through real processes on give_credit: parity with optbinning, floors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fedcredit.launcher import LocalNetwork
from models.binning.bins import ColumnBins
from proto.fedcredit.v1 import coordinator_pb2
from tests.integration.conftest import run_job
from tests.integration.give_credit import GUEST, HOST, give_credit_specs
from tests.unit.models.test_binning import pooled_table


def test_give_credit_woe_and_iv_equal_optbinning_pooled(tmp_path: Path) -> None:
    with LocalNetwork(tmp_path, give_credit_specs()) as net:
        net.start(timeout=120)
        net.stub().Align(coordinator_pb2.AlignRequest(label_party="bank", job_id="al"),
                         timeout=600)
        job = run_job(net.stub(), "gc-bin", "binning", {"method": "optimal", "bins": 20})
        assert job.state == "done", job.error
        low = run_job(net.stub(), "low-floor", "binning", {"min_bin_rows": 16})
    assert low.state == "failed" and "below this node's minimum of 128" in low.error
    refusals = [json.loads(line) for party in ("bank", "host") for line in
                (tmp_path / "state" / party / "audit.jsonl").read_text().splitlines()
                if '"train.refused"' in line]  # the first node opened refuses, audited
    assert any(r["job"] == "low-floor" and r["details"]["floor"] == 128
               and r["details"]["floor_name"] == "min_bin_rows" for r in refusals)

    report = json.loads(job.metrics_json)["history"][-1]  # the coordinator's copy: no bins
    assert len(report["iv_table"]) == 10 and "bins_table" not in report["iv_table"][0]
    models = tmp_path / "state"
    host_bins = [ColumnBins.from_json(c) for c in json.loads(
        (models / "host" / "models" / "gc-bin" / "binning.json").read_bytes())["columns"]]
    summary = json.loads((models / "bank" / "models" / "gc-bin" / "binning.json").read_bytes())
    guest = np.loadtxt(GUEST, delimiter=",", skiprows=1)
    host = np.loadtxt(HOST, delimiter=",", skiprows=1)
    assert np.array_equal(guest[:, 0], host[:, 0])  # the same ids: pooled by row
    worst = 0.0
    for j, column in enumerate(host_bins):
        found = next(c for c in summary["characteristics"]
                     if c["party"] == "host" and c["name"] == column.name)
        woe, iv = pooled_table(host[:, 1 + j], guest[:, 1], column.edges, ())
        table = found["bins_table"]
        assert [r["bin"] for r in table][:2] == ["bin 0", "bin 1"]  # indices, never edges
        worst = max(worst, *(abs(r["woe"] - w) for r, w in zip(table, woe, strict=True)),
                    *(abs(r["iv"] - v) for r, v in zip(table, iv, strict=True)))
        assert column.woe is not None
        assert np.allclose([r["woe"] for r in table], column.woe[[
            *range(column.value_bins), column.bins, column.bins + 1]], atol=0)
    print(f"give_credit binning: max |federated - optbinning pooled| = {worst:.3g}")
    assert worst <= 1e-9

"""Horizontal training on real Flower processes: SecAgg+ on the wire, a dropout, DP, refusals."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.errors import ProtocolError
from fedcredit.hfl.federation import Federation
from fedcredit.hfl.job import BankSpec, HflJob
from fedcredit.hfl.run import load_bank_tables, run_hfl
from fedcredit.synth import synthesize
from models.hfl.centralized import train_centralized
from models.hfl.settings import epsilon_spent

pytestmark = pytest.mark.slow

MOD_RANGE = 2**32
TARGET_RANGE = 2**22  # Flower's SecAgg+ quantisation: [-8, 8] onto [0, 2^22), masks mod 2^32
CLIPPING_RANGE = 8.0


def unmasked_encoding(weights: np.ndarray, rows: int, max_weight: float) -> np.ndarray:
    """What a bank would send without masks: weight factor, then its scaled quantised update."""
    q_ratio = round(rows / max_weight * TARGET_RANGE)
    scaled = np.clip(weights * q_ratio / TARGET_RANGE, -CLIPPING_RANGE, CLIPPING_RANGE)
    return np.concatenate([[q_ratio], np.floor((scaled + CLIPPING_RANGE)
                                               * TARGET_RANGE / (2 * CLIPPING_RANGE))])


@pytest.fixture(scope="module")
def banks(tmp_path_factory: pytest.TempPathFactory) -> list[BankSpec]:
    data = synthesize(tmp_path_factory.mktemp("synth"), enterprises=3000, seed=11, banks=3)
    return [BankSpec(name=f"bank-{k}", table=data.parties[f"bank_{k}"].path)
            for k in (1, 2, 3)]


@pytest.fixture(scope="module")
def federation(banks: list[BankSpec],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("fed")
    capture = root / "capture"
    capture.mkdir()
    with Federation(root, banks, capture_dir=capture) as fed:
        yield fed
        groups = {name: proc.pid for name, proc in fed.processes.items()}
    # no orphans: every process group (SuperLink, SuperNodes and what they started) is gone
    deadline = time.monotonic() + 10
    while (alive := [n for n, pgid in groups.items() if _group_alive(pgid)]) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert groups and not alive, f"processes outlived the federation: {alive}"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# A healthy stage takes 6-9 s (measured with a CI run beside it): mostly Flower's 3 s polls (the
# ServerApp's grid, each idle SuperNode) around the ClientApps' work. The timeout is also
# what the dropout test waits for the killed bank, and that wait must end before the SuperLink
# counts the bank offline (two missed 30 s heartbeats after its last one, sent every ~24 s: at
# the earliest ~34 s after the kill), else the bank's missing reply becomes an error reply. So
# 25 s, not more: 2.8-4x over a healthy stage, and ~6 s short of the earliest offline mark.
STAGE_TIMEOUT_S = 25.0


def _job(banks: list[BankSpec], **kw: Any) -> HflJob:
    settings: dict[str, Any] = {"rounds": 3, "lr": 0.5, "stage_timeout": STAGE_TIMEOUT_S,
                                "job_id": "secure"}
    settings.update(kw)
    return HflJob(banks=banks, **settings)


def _weighted_mean(captures: list[dict[str, Any]]) -> np.ndarray:
    rows = np.array([c["num_examples"] for c in captures], dtype=np.float64)
    flat = np.array([np.concatenate([np.ravel(a) for a in c["weights"]]) for c in captures])
    return (rows[:, None] * flat).sum(axis=0) / rows.sum()


# 122 s quiet (153 s with a CI run beside it; two stages wait out STAGE_TIMEOUT_S), plus the
# federation's start-up: the suite's 600 s default would leave ~4x, 900 s leaves ~6x.
@pytest.mark.timeout(900)
def test_secure_rounds_survive_a_dropout(federation: Federation, banks: list[BankSpec]) -> None:
    # prepare: three banks, SecAgg+ (threshold 2 of 3); bank-3 is killed during round 2's
    # masked-vector stage; rounds go on while at least two banks answer
    job = _job(banks, min_banks=2)
    tables = load_bank_tables(banks)
    run_dir = federation.workdir / "runs" / "secure"
    events: list[dict[str, Any]] = []

    def on_event(event: dict[str, Any]) -> None:
        events.append(event)
        if event["event"] == "stage-send" and event["round"] == 2 \
                and event["stage"] == "collect_masked_vectors":
            federation.kill_bank("bank-3")

    # execute
    max_weight = max(len(y) for _, y in tables)
    federation.submit(job, features=tables[0][0].shape[1], max_weight=max_weight,
                      run_dir=run_dir, capture=True)
    result = federation.follow(run_dir, deadline=time.monotonic() + 600, progress=on_event)

    # assert: every round completed; round 2 (the dropout) and 3 from the two survivors
    rounds = result["rounds"]
    assert [r["status"] for r in rounds] == ["completed"] * 3
    assert [r["banks_aggregated"] for r in rounds] == [3, 2, 2]
    capture = federation.capture_dir
    assert capture is not None
    for r in rounds[:2]:
        masked = [json.loads(p.read_text())
                  for p in capture.glob(f"masked-*-round{r['round']}.json")]
        node_ids = {m["node_id"] for m in masked}
        plain = [json.loads(p.read_text()) for p in capture.glob(f"bank-*-round{r['round']}.json")]
        contributed = [c for c in plain if c["node_id"] in node_ids]
        assert len(contributed) == r["banks_aggregated"]
        # the coordinator's aggregate is the rows-weighted mean of the contributed updates
        aggregate = np.concatenate([np.ravel(a) for a in r["weights"]])
        np.testing.assert_allclose(aggregate, _weighted_mean(contributed), atol=1e-4)
        # while each bank's vector as the coordinator received it is unrelated to its update:
        # no entry is within rounding of what the bank would have sent unmasked
        for m in masked:
            values = np.concatenate([np.ravel(a) for a in m["masked"]]).astype(np.float64)
            update = next(c for c in contributed if c["node_id"] == m["node_id"])
            flat = np.concatenate([np.ravel(a) for a in update["weights"]])
            gap = np.abs(values - unmasked_encoding(flat, update["num_examples"], max_weight))
            assert np.all(np.minimum(gap, MOD_RANGE - gap) > 2)
            assert values.max() < MOD_RANGE
    # the dropout cost time (a stage waited for bank-3), not correctness
    assert any(e["event"] == "stage-receive" and e["round"] == 2 and e["errors"] + e["replies"]
               < e["sent"] for e in events)
    # round 1 (all banks, full-batch step) scores like one step of the pooled twin
    central = train_centralized(tables, job.hyper_params(), rounds=1)
    assert abs(rounds[0]["auc"] - central.auc) < 0.02


def test_dp_round_writes_epsilon_to_the_audit_log(federation: Federation,
                                                  banks: list[BankSpec]) -> None:
    # prepare: one DP round (noise multiplier 1.0, clipping 0.5) on the running federation
    if "bank-3" not in federation.processes:
        federation.restart_bank("bank-3")
    job = _job(banks, rounds=1, job_id="dp",
               dp={"noise_multiplier": 1.0, "clipping_norm": 0.5, "delta": 1e-5})
    tables = load_bank_tables(banks)
    run_dir = federation.workdir / "runs" / "dp"
    audit = federation.workdir / "audit" / "dp.jsonl"

    # execute
    federation.submit(job, features=tables[0][0].shape[1],
                      max_weight=max(len(y) for _, y in tables), run_dir=run_dir,
                      audit_path=audit)
    result = federation.follow(run_dir, deadline=time.monotonic() + 300)

    # assert
    expected = epsilon_spent(1, 1.0, 1e-5)
    assert result["dp"]["epsilon"] == pytest.approx(expected)
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    finish = [e for e in entries if e["event"] == "hfl.finish"]
    assert finish and finish[0]["details"]["epsilon"] == pytest.approx(expected)
    assert finish[0]["job"] == "dp"


def test_two_banks_without_dp_are_refused(banks: list[BankSpec], tmp_path: Path) -> None:
    job = HflJob(banks=banks[:2], rounds=1)

    with pytest.raises(ProtocolError, match="two banks|2 banks"):
        run_hfl(job, tmp_path / "fed")

    assert not (tmp_path / "fed").exists()  # refused before any process started

"""Binning across two feature nodes through real processes: peer columns sealed, VIF, refusal.

A bank and feature nodes f1, f2, f3 on give_credit rows (f2 holds a noisy copy of f1's x0; f3
does not share its correlation matrix). The coordinator runs in this process behind a wire tap
(`tapped_network`), so every byte relayed between the nodes is recorded; the nodes are real
processes with mutual TLS, each pinning the others (the last test: one that does not).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.uscc import generate_uscc
from crypto.he.bfv_ring import HIST_PLAIN_BITS
from fedcredit.evaluate import load_party_tables
from fedcredit.launcher import LocalNetwork, PartySpec
from fedcredit.scorecard_twin import compare_scorecard, max_points_difference
from models.binning import WOE_BITS
from models.binning.algorithm import ALGORITHM
from models.binning.bins import ColumnBins
from models.scorecard import ScorecardConfig
from models.scorecard.points import PartyCard
from node.alignment import AlignmentStore
from proto.fedcredit.v1 import common_pb2, coordinator_pb2
from tests.integration.conftest import run_job, tapped_network, write_table
from tests.integration.test_scorecard_network import CARD
from tests.integration.wiretap import WireTap
from tests.unit.models.test_binning import give_credit
from tests.unit.models.test_binning_selection import EPS, noisy_copy, regression_vif

ROWS = 6000
BINNING = {"method": "quantile", "bins": 10, "max_correlation": 0.99, "max_vif": 5.0}
PAIR = ("f1:x0", "f2:x2")  # f2's x2 is a noisy copy of f1's x0


@dataclass
class Run:
    net: LocalNetwork
    tables: dict[str, np.ndarray]  # each party's feature columns, rows in one (the ids') order
    job: coordinator_pb2.JobStatus  # the binning job with max_vif on f1 and f2
    wire: list[tuple[str, str, Any]]  # what crossed the coordinator during that job
    tap: WireTap  # still recording (cleared after that job)

    def bins(self, party: str, job: str = "bin-vif") -> list[ColumnBins]:
        found = json.loads((self.net.workdir / "state" / party / "models" / job /
                            "binning.json").read_bytes())["columns"]
        return [ColumnBins.from_json(c) for c in found]

    def woe(self, key: str, job: str = "bin-vif") -> np.ndarray:
        """A characteristic's WOE-encoded column over every row, from its holder's own bins."""
        party, name = key.split(":")
        bins = self.bins(party, job)
        column = next(j for j, c in enumerate(bins) if c.name == name)
        return bins[column].transform(self.tables[party][:, column])

    def iv_table(self, job: coordinator_pb2.JobStatus | None = None) -> dict[str, dict[str, Any]]:
        rows = json.loads((job or self.job).metrics_json)["history"][-1]["iv_table"]
        return {f"{r['party']}:{r['name']}": r for r in rows}


def _specs(folder: Path) -> tuple[list[PartySpec], dict[str, np.ndarray]]:
    bank, y, features = noisy_copy(give_credit(ROWS), 0.03)
    rng = np.random.default_rng(11)
    features["f3"] = np.column_stack([rng.normal(size=y.size),
                                      np.log1p(np.abs(features["f2"][:, 0]))])
    tables = {"bank": bank, **features}
    ids = generate_uscc(rng, y.size)
    folder.mkdir(parents=True)
    specs = []
    for party, table in tables.items():
        columns = {f"x{j}": table[:, j] for j in range(table.shape[1])}
        data = {"source": "csv", "path": str(folder / f"{party}.csv"), "id_column": "id"}
        if party == "bank":
            columns["y"], data["label_column"] = y, "y"
        write_table(folder / f"{party}.csv", ids, columns)
        settings = {"floors": {"share_correlations": False}} if party == "f3" else {}
        specs.append(PartySpec(party, "label" if party == "bank" else "feature", data,
                               settings))
    read = {p: np.loadtxt(folder / f"{p}.csv", delimiter=",", skiprows=1,
                          usecols=range(1, 1 + t.shape[1])) for p, t in tables.items()}
    return specs, read  # the values as the nodes read them (write_table rounds to 6 digits)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("binning-peers")
    specs, tables = _specs(root / "data")
    with tapped_network(root, specs) as (net, tap):
        net.stub().Align(coordinator_pb2.AlignRequest(label_party="bank", job_id="al"),
                         timeout=600)
        tap.clear()
        job = run_job(net.stub(), "bin-vif", "binning", BINNING, features=["f1", "f2"])
        wire = list(tap.messages)
        tap.clear()
        yield Run(net, tables, job, wire, tap)


def _pooled_vifs(run: Run, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(VIF, tolerance) per key: the pooled WOE columns' VIF (statsmodels' definition) and how
    far a federated one may be from it: the quantisation of the inner products across parties
    (first order, bounded as in tests/unit/models/test_binning_selection.py), plus the IV
    table's rounding to 4 decimals."""
    columns = np.stack([run.woe(k) for k in keys], axis=1)
    sd = columns.std(axis=0)
    across = np.array([[a.split(":")[0] != b.split(":")[0] for b in keys] for a in keys])
    dr = np.where(across, 2 * EPS * (1 / sd[:, None] + 1 / sd[None, :]), 0.0)
    inverse = np.linalg.inv(np.corrcoef(columns, rowvar=False))
    return regression_vif(columns), 2 * np.sum(inverse**2, axis=0) * np.linalg.norm(dr) + 1e-4


def test_the_copy_is_dropped_by_vif_and_every_selected_vif_is_within_the_limit(
        run: Run) -> None:
    assert run.job.state == "done", run.job.error
    table = run.iv_table()
    assert {k.split(":")[0] for k in table} == {"bank", "f1", "f2"}
    dropped = [k for k, r in table.items() if not r["selected"]]
    assert all(table[k]["reason"].startswith("IV ") for k in dropped if k not in PAIR)
    [copy] = [k for k in dropped if k in PAIR]  # the copy or its original, not both
    limit = BINNING["max_vif"]
    assert table[copy]["reason"] == f"VIF {table[copy]['vif']:.3g} above {limit:g}"
    # its VIF is from the first round, over every column above the IV threshold: the pair's
    # pooled VIFs are the two highest there, both above the limit
    ranked = [k for k in table if not table[k]["reason"].startswith("IV ")]
    first = regression_vif(np.stack([run.woe(k) for k in ranked], axis=1))
    assert {ranked[j] for j in np.argsort(first)[-2:]} == set(PAIR)
    assert first[ranked.index(copy)] > limit and table[copy]["vif"] > limit
    selected = [k for k in ranked if k != copy]  # their VIFs from the second round
    assert all(table[k]["selected"] and table[k]["reason"] == "" for k in selected)
    reported = np.array([table[k]["vif"] for k in selected])
    assert np.all(reported <= limit)
    pooled, tolerance = _pooled_vifs(run, selected)
    assert np.all(np.abs(reported - pooled) <= tolerance), (selected, reported, pooled)


def _parts(wire: list[tuple[str, str, Any]], prefix: str, direction: str,
           ) -> list[common_pb2.Part]:
    return [m.part for method, way, m in wire if method.endswith("RunStep") and way == direction
            and isinstance(m, common_pb2.StepMessage) and m.HasField("part")
            and m.part.name.startswith(prefix)]


def test_f1s_columns_reach_f2_sealed_through_the_relay(run: Run) -> None:
    sent = _parts(run.wire, "columns:", "response")  # f1's reply to `finish`
    relayed = _parts(run.wire, "columns:", "request")  # the coordinator's call of f2's `cross`
    assert sent and {(p.name, p.sender, p.recipient, p.sealed) for p in sent + relayed} == {
        ("columns:f1>f2", "f1", "f2", True)}  # one way only: f2 sorts after f1
    assert b"".join(p.data for p in relayed) == b"".join(p.data for p in sent)
    answers = _parts(run.wire, "cross:", "response")  # f2 answered them, sealed to the bank
    assert answers and {(p.name, p.sender, p.recipient, p.sealed) for p in answers} == {
        ("cross:f2", "f2", "bank", True)}
    sealed = ALGORITHM.node_to_node()
    every = _parts(run.wire, "", "request") + _parts(run.wire, "", "response")
    assert all(p.sealed for p in every if p.name.split(":")[0] in sealed)

    blob = b"\x00".join(m.SerializeToString() for _, _, m in run.wire)
    order = AlignmentStore(run.net.workdir / "state" / "f1").load_feature("al")
    assert order.n_rows == ROWS and np.array_equal(np.sort(order.positions), np.arange(ROWS))
    for j, column in enumerate(run.bins("f1")):
        assert column.woe is not None
        woe = np.empty(ROWS)  # f1's WOE column in the job's row order, as it encrypts it
        woe[order.positions] = column.transform(run.tables["f1"][order.own_rows, j])
        quantised = np.rint(woe * 2**WOE_BITS).astype(np.int64)
        assert np.unique(quantised).size > 1
        for start in range(0, ROWS - 16, 97):
            window = quantised[start:start + 16]
            for raw in (window.astype("<i8"), np.mod(window, 1 << HIST_PLAIN_BITS).astype("<u8"),
                        woe[start:start + 16].astype("<f8")):
                assert raw.tobytes() not in blob, (column.name, start)
        # the bank's WOE per bin reached f1 only sealed: neither binary nor JSON text crosses
        assert column.woe.astype("<f8").tobytes() not in blob
        texts = [repr(float(w)).encode() for w in column.woe if len(repr(float(w))) > 8]
        assert texts and not [t for t in texts if t in blob], column.name


NO_CORRELATIONS = {"method": "quantile", "bins": 10, "max_correlation": None, "max_vif": None}


def _opened_with(wire: list[tuple[str, str, Any]]) -> list[list[str]]:
    """Whose sealing keys the coordinator handed a node with each `open` step (sorted)."""
    return sorted(sorted(p.party for p in m.header.peers) for method, way, m in wire
                  if method.endswith("RunStep") and way == "request"
                  and isinstance(m, common_pb2.StepMessage) and m.HasField("header")
                  and m.header.step == "open")


def test_a_job_without_correlations_hands_no_feature_node_another_ones_key(run: Run) -> None:
    # with correlations (the fixture's job) each feature node got the other's key besides the
    # bank's; the bank (first: no "bank" among its peers) got both feature nodes'
    assert _opened_with(run.wire) == [["bank", "f1"], ["bank", "f2"], ["f1", "f2"]]
    run.tap.clear()
    job = run_job(run.net.stub(), "bin-plain", "binning", NO_CORRELATIONS, features=["f1", "f2"])
    wire = list(run.tap.messages)
    assert job.state == "done", job.error
    assert _opened_with(wire) == [["bank"], ["bank"], ["f1", "f2"]]
    assert not [p for way in ("request", "response") for prefix in ("columns:", "cross:")
                for p in _parts(wire, prefix, way)]  # nothing between feature nodes
    table = run.iv_table(job)
    assert {k.split(":")[0] for k in table} == {"bank", "f1", "f2"}
    assert all(r["selected"] or r["reason"].startswith("IV ") for r in table.values())
    assert table[PAIR[0]]["selected"] and table[PAIR[1]]["selected"]  # no correlation filter


def test_a_node_not_sharing_correlations_refuses_vif_and_takes_a_job_without(run: Run) -> None:
    stub, everyone = run.net.stub(), ["f1", "f2", "f3"]
    refused = run_job(stub, "bin-refused", "binning", BINNING, features=everyone)
    assert refused.state == "failed"
    assert refused.error.startswith("f3 refused step open"), refused.error
    assert "max_vif" in refused.error and "share_correlations = false" in refused.error
    audit = run.net.workdir / "state" / "f3" / "audit.jsonl"
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    refusals = [e for e in events if e["event"] == "train.refused"]
    assert [(e["job"], e["details"]) for e in refusals] == [
        ("bin-refused", {"setting": "[binning] max_vif", "floor_name": "share_correlations",
                         "shared": False})]
    assert not [e for e in events if e["event"] == "train.open" and e["job"] == "bin-refused"]

    settings = {"method": "quantile", "bins": 10, "max_correlation": 0.7}
    job = run_job(stub, "bin-no-vif", "binning", settings, features=everyone)
    assert job.state == "done", job.error
    table = run.iv_table(job)
    assert {k.split(":")[0] for k in table} == {"bank", "f1", "f2", "f3"}
    assert not [r for r in table.values() if "vif" in r]
    first, second = (table[k] for k in PAIR)
    kept, dropped = (PAIR[0], PAIR[1]) if (-first["iv"], PAIR[0]) < (-second["iv"], PAIR[1]) \
        else (PAIR[1], PAIR[0])  # the filter keeps the higher IV (on ties the earlier key)
    assert table[kept]["selected"] and not table[dropped]["selected"]
    reason = table[dropped]["reason"]
    assert reason.startswith(f"correlated with {kept} (r = "), reason
    # r across two feature nodes is an inner product of quantised WOE columns (f2 summed f1's
    # encrypted columns over its bins): first order |dr| <= 2 EPS (1/sd_a + 1/sd_b), plus the
    # reason's rounding to 3 decimals
    woe = [run.woe(k, "bin-no-vif") for k in PAIR]
    pooled = float(np.corrcoef(*woe)[0, 1])
    bound = 2 * EPS * sum(1 / w.std() for w in woe) + 5e-4
    assert abs(float(reason.split("r = ")[1].rstrip(")")) - pooled) <= bound, (reason, pooled)


def test_a_scorecard_trains_on_the_characteristics_selected_across_nodes(run: Run) -> None:
    card = run_job(run.net.stub(), "card", "scorecard", {**CARD, "binning_job": "bin-vif"},
                   features=["f1", "f2"])  # no characteristics: the binning job's selected
    assert card.state == "done", card.error
    chosen = [k for k, r in run.iv_table().items() if r["selected"]]
    state = run.net.workdir / "state"
    names = {f"{p}:{n}" for p in ("bank", "f1", "f2") for n in PartyCard.from_json(
        (state / p / "models" / "card" / "scorecard.json").read_text())[0].names}
    assert names == set(chosen) and not set(PAIR) <= names
    config = ScorecardConfig(**CARD, binning_job="bin-vif", characteristics=chosen)
    tables = load_party_tables({p.name: p.data for p in run.net.parties}, "bank")
    pooled = compare_scorecard(state, tables, "bank", "al", config)
    federated = json.loads(card.metrics_json)["history"][-1]["auc"]
    worst = max_points_difference(state, "card", pooled)
    print(f"scorecard over three parties: AUC federated {federated:.4f}, pooled twin "
          f"{pooled.auc:.4f}; max |points difference| per bin (and base) {worst:.3g}")
    assert abs(federated - pooled.auc) <= 0.005
    assert worst < 0.5  # equal within rounding to whole points


def test_a_feature_node_pinning_only_the_bank_refuses_correlations_and_runs_without(
        tmp_path: Path) -> None:
    """Feature nodes seal binning parts to each other when a job asks for correlations: then
    each must pin the others, not only the bank; one that does not refuses the job at open. A
    binning job without correlations hands it no other feature node's key: that one runs."""
    specs = [s for s in _specs(tmp_path / "data")[0] if s.name != "f3"]
    net = LocalNetwork(tmp_path / "net", specs)
    net.prepare()  # the certificates, to pin their fingerprints
    net.pins = {s.name: {p.name: net.fingerprint(p.name) for p in specs if p.name != s.name}
                for s in specs}
    net.pins["f2"] = {"bank": net.fingerprint("bank")}
    with net:
        net.start(timeout=120)
        net.stub().Align(coordinator_pb2.AlignRequest(label_party="bank", job_id="al"),
                         timeout=600)
        job = run_job(net.stub(), "bin", "binning", BINNING, features=["f1", "f2"])
        plain = run_job(net.stub(), "bin-plain", "binning", NO_CORRELATIONS,
                        features=["f1", "f2"])
    assert plain.state == "done", plain.error
    assert job.state == "failed"
    assert job.error.startswith("f2 refused step open"), job.error
    assert "f2 has no pinned certificate for f1 ([trust] peers" in job.error
    events = [json.loads(line) for line in
              (tmp_path / "net" / "state" / "f2" / "audit.jsonl").read_text().splitlines()]
    assert [(e["job"], e["peer"]) for e in events if e["event"] == "trust.refused"] == [
        ("bin", "f1")]

"""Joint scoring of a SecureBoost model through real processes: exactness and wire contents."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest

from crypto.he import BFV_SUITE, BfvPrivate
from crypto.he import scoring as score_he
from fedcredit.demo.parties import party_specs
from fedcredit.evaluate import load_party_tables
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import synthesize
from models.sbt.codec import FeatureModel, LabelModel, load_feature_model, load_label_model
from models.sbt.feature import LEAF
from node.config import load_node_config
from node.datasource import NodeTable
from node.policy import CreditPolicy
from node.scoring.bank import BankScorer
from proto.fedcredit.v1 import coordinator_pb2, coordinator_pb2_grpc
from tests.integration.conftest import run_job, tapped_network
from tests.integration.wiretap import WireTap

JOB = "tr-sbt"
FEATURES = ["core", "logistics", "tax"]
Setup = tuple[LocalNetwork, WireTap, dict[str, NodeTable], BankScorer]


@pytest.fixture(scope="module")
def scoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("scoring-sbt")
    synth = synthesize(root / "data", enterprises=1500, seed=4)
    specs = party_specs(synth)
    with tapped_network(root, specs) as (net, tap):
        stub = net.stub()
        stub.Align(coordinator_pb2.AlignRequest(label_party="bank", job_id="al"), timeout=300)
        job = run_job(stub, JOB, "sbt", {"trees": 3, "depth": 3}, features=FEATURES,
                      model_name="")
        assert job.state == "done", job.error
        tables = load_party_tables({s.name: s.data for s in specs}, "bank")
        tap.clear()  # from here on, only scoring traffic
        scorer = BankScorer(load_node_config(net.config_path("bank")), CreditPolicy())
        # The tap's server side sees unary calls only: tap the bank's streamed `Score` calls
        # at its client, and set up again so the set-up is captured too.
        scorer.stub = coordinator_pb2_grpc.CoordinatorServiceStub(
            grpc.intercept_channel(scorer.channel, tap.client_interceptor()))
        scorer.setup()
        try:
            yield net, tap, tables, scorer
        finally:
            scorer.close()


def _saved(state: Path, party: str) -> LabelModel:
    return load_label_model((state / party / "models" / JOB / "sbt_model.json").read_bytes())


def _saved_feature(state: Path, party: str) -> FeatureModel:
    return load_feature_model((state / party / "models" / JOB / "sbt_model.json").read_bytes())


def _values(table: NodeTable, ids: Sequence[str]) -> np.ndarray:
    row_of = {ident: row for row, ident in enumerate(table.ids)}
    out = np.full((len(ids), table.X.shape[1]), np.nan)
    for k, ident in enumerate(ids):
        if ident in row_of:
            out[k] = table.X[row_of[ident]]
    return out


def plaintext_sbt_probabilities(state: Path, tables: Mapping[str, NodeTable],
                                ids: Sequence[str]) -> np.ndarray:
    """Every party's saved part evaluated in the clear (an unknown id: missing direction)."""
    bank = _saved(state, "bank")
    parts = {name: _saved_feature(state, name) for name in bank.feature_parties}
    values = {name: _values(tables[name], ids) for name in ["bank", *bank.feature_parties]}
    margin = np.full(len(ids), float(bank.base_margin))
    for t, tree in enumerate(bank.trees):
        for k in range(len(ids)):
            node = 0
            while tree.owner[node] != LEAF:
                owner = int(tree.owner[node])
                if owner == 0:
                    x = values["bank"][k, tree.feature[node]]
                    threshold, missing_left = tree.threshold[node], tree.missing_left[node]
                else:
                    name = bank.feature_parties[owner - 1]
                    record = parts[name].records[int(parts[name].topologies[t][node])]
                    x = values[name][k, record.feature]
                    threshold, missing_left = record.threshold, record.missing_left
                left = missing_left if np.isnan(x) else x <= threshold
                node = 2 * node + 1 if left else 2 * node + 2
            margin[k] += tree.value[node]
    out: np.ndarray = 1.0 / (1.0 + np.exp(-margin))
    return out


def _ids(tables: dict[str, NodeTable]) -> list[str]:
    bank = set(tables["bank"].ids)
    only_features = [i for name in FEATURES for i in tables[name].ids if i not in bank]
    return list(tables["bank"].ids[:200]) + sorted(set(only_features))[:60] + [
        "91110000000000000X"]


def test_decrypted_probabilities_equal_the_plaintext_trees(scoring: Setup) -> None:
    net, _, tables, scorer = scoring
    assert scorer.algorithm == "sbt"
    ids = _ids(tables)
    decisions = scorer.score(ids, consent="consent-sbt-1")

    expected = plaintext_sbt_probabilities(net.workdir / "state", tables, ids)
    got = np.asarray([d.probability for d in decisions])
    assert np.abs(got - expected).max() < 1e-6
    assert np.unique(np.round(got, 6)).size > 5  # the trees do separate enterprises
    holders = {name: set(t.ids) for name, t in tables.items()}
    for d in decisions:
        assert d.parties_covering == sum(d.id in h for h in holders.values())
    assert decisions[-1].parties_covering == 0
    assert decisions[-1].reasons == ("no history at this bank",)
    assert decisions[-1].outcome == "refer" and decisions[-1].grade is None  # a person decides
    assert {d.grade for d in decisions[:-1]} <= {g.grade for g in scorer.policy.grades}
    bank_features = set(tables["bank"].features)
    assert all(set(d.reasons) <= bank_features for d in decisions[:200])


def test_coordinator_handles_only_ciphertexts_and_keyed_hashes(scoring: Setup) -> None:
    net, tap, tables, scorer = scoring
    ids = list(tables["bank"].ids[300:340])
    decisions = scorer.score(ids, consent="consent-sbt-2")

    blob = tap.blob()
    assert not [i for t in tables.values() for i in t.ids if i.encode() in blob]
    for d in decisions:  # no result in any message
        assert np.asarray(d.probability, "<f8").tobytes() not in blob
    names = set()
    for method, direction, field, data in tap.fields():
        names.add(field)
        if ".NodeService/" in method and direction == "request":
            # A feature node is sent pseudonyms sealed to it with the bank's encrypted
            # selectors, or the bank's signed set-up: never a sum, a result or another node's
            # part.
            assert field in ("header", "sealed_ids", "model_request", "setup")
            if field == "sealed_ids":
                assert (len(data) - 16 - 72) % 16 == 0  # salt, pseudonyms, seal
            if field == "model_request":
                assert len(data) > 16
        if field == "model_context":  # the relay's BFV context is public keys only
            BFV_SUITE.load_public(data)
    assert {"sealed_ids", "model_request", "model_context", "partials", "model_part", "sums",
            "model_sum"} <= names
    stored = b"".join(p.read_bytes() for p in (net.workdir / "state" / "coordinator").rglob("*")
                      if p.is_file())
    assert not [i for i in ids if i.encode() in stored]  # nor an id in what it keeps


def test_coordinator_refuses_a_context_with_a_secret_key(scoring: Setup) -> None:
    _, _, _, scorer = scoring
    key = scorer.part.private_key
    assert isinstance(BfvPrivate.from_private_bytes(key), BfvPrivate)
    from crypto.consent import sign_blob
    from crypto.score_wire import SETUP_DOMAIN, setup_payload

    context = score_he.public_bytes(scorer.context)
    assert scorer._key_pem is not None  # the bank signs it: the coordinator still refuses it
    signature = sign_blob(scorer._key_pem, SETUP_DOMAIN, setup_payload(
        scorer.job, scorer.party, context, key), signer=scorer.party)
    header = coordinator_pb2.ScoreSetupHeader(bank=scorer.party, model_id=scorer.model_id,
                                              model_job=scorer.job, context_bytes=len(context),
                                              model_context_bytes=len(key),
                                              setup_signature=signature)
    upload = [coordinator_pb2.ScoreSetupUpload(header=header),
              coordinator_pb2.ScoreSetupUpload(context=context),
              coordinator_pb2.ScoreSetupUpload(model_context=key)]
    with pytest.raises(grpc.RpcError) as err:
        scorer.stub.ScoreSetup(iter(upload), timeout=60)
    assert "context" in (err.value.details() or "")


def test_no_feature_node_sees_another_nodes_part_or_a_result(scoring: Setup) -> None:
    _, tap, _, _ = scoring
    to_nodes, answers = [], []
    for method, direction, field, data in tap.fields():
        if ".NodeService/" not in method:
            continue
        if direction == "request":
            to_nodes.append((field, data))
        elif field in ("partials", "model_part"):
            answers.append(data)
    assert to_nodes and answers
    assert not [f for f, _ in to_nodes if f in ("partials", "model_part", "sums", "model_sum")]
    sent = b"".join(data for _, data in to_nodes)
    for answer in answers:  # no node's answer (nor a piece of it) reaches any node
        assert answer[-4096:] not in sent


def test_no_lookup_table_threshold_crosses_the_wire(scoring: Setup) -> None:
    net, tap, tables, scorer = scoring
    scorer.score(list(tables["core"].ids[:50]), consent="consent-sbt-3")
    blob = tap.blob()
    thresholds = [r.threshold for name in FEATURES
                  for r in _saved_feature(net.workdir / "state", name).records]
    # Integer thresholds (0.0, 1.0, ...) are common byte patterns in any framing; the
    # fractional ones identify a lookup entry.
    fractional = [t for t in thresholds if np.isfinite(t) and t != np.round(t)]
    assert fractional
    assert not [t for t in fractional if np.asarray(t, "<f8").tobytes() in blob]


def test_the_model_report_of_trees_carries_ks_and_says_it_is_in_sample(scoring: Setup) -> None:
    from fedcredit.report.bank import ReportRequest, bank_report

    net, _, tables, scorer = scoring
    job = net.stub().GetJob(coordinator_pb2.GetJobRequest(job_id=JOB), timeout=30)
    metrics = json.loads(job.metrics_json)
    assert metrics["ks"] is not None and 0 < metrics["ks"] < 1  # was null before reports

    report = bank_report(scorer, ReportRequest(consent="validation-sbt"))

    assert "in-sample" in report["rows_note"]
    assert report["rows"] == tables["bank"].training_view().rows
    # the leaves the joint scoring reaches are the training margins' leaves: the same figures
    assert report["auc"] == pytest.approx(metrics["auc"], abs=1e-9)
    assert report["ks"] == pytest.approx(metrics["ks"], abs=1e-9)
    assert report["stability"] is None and "no scoring population" in report["stability_note"]

"""The bank's decisions through real processes: applicants without labels, the decision service."""

from __future__ import annotations

import csv
import datetime as dt
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedcredit.demo.parties import party_specs
from fedcredit.evaluate import load_party_tables, plaintext_probabilities
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import synthesize
from models.vlr import VlrConfig
from models.vlr.scoring import PartyModel
from node.alignment import AlignmentStore
from node.config import load_node_config
from node.datasource import NodeTable
from node.policy import CreditPolicy
from node.scoring.bank import BankScorer
from proto.fedcredit.v1 import coordinator_pb2
from tests.integration.conftest import run_job
from tests.integration.decision_http import call

APPLICANTS = 150


@dataclass
class Bank:
    net: LocalNetwork
    tables: dict[str, NodeTable]
    applicants: list[str]  # the bank's rows with an empty label
    segments: Path  # tier and credit-white of every enterprise (synthetic data)
    url: str = ""  # the decision service, once started


def _blank_labels(path: Path, label: str, count: int) -> list[str]:
    """Empty the label of the last `count` rows of a CSV; their ids."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    for row in rows[-count:]:
        row[label] = ""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return [row["id"] for row in rows[-count:]]


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bank]:
    root = tmp_path_factory.mktemp("decisions")
    synth = synthesize(root / "data", enterprises=1500, seed=5)
    part = synth.parties["bank"]
    applicants = _blank_labels(Path(part.path), part.label_column or "default", APPLICANTS)
    specs = party_specs(synth)
    net = LocalNetwork(root, specs)
    with net:
        net.start(timeout=120)
        stub = net.stub()
        stub.Align(coordinator_pb2.AlignRequest(label_party="bank", job_id="al"), timeout=300)
        job = run_job(stub, "tr", "vlr", {"batch_size": 256, "max_epochs": 2},
                      features=["core", "logistics", "tax"], model_name="")
        assert job.state == "done", job
        tables = load_party_tables({s.name: s.data for s in specs}, "bank")
        yield Bank(net=net, tables=tables, applicants=applicants,
                   segments=synth.segments_path)


def test_unlabelled_rows_are_counted_and_never_aligned_or_trained_on(bank: Bank) -> None:
    table = bank.tables["bank"]
    assert table.unlabelled_rows == APPLICANTS
    listed = {n.party: n for n in bank.net.stub().ListNodes(
        coordinator_pb2.ListNodesRequest(), timeout=30).nodes}
    assert listed["bank"].rows == table.rows
    assert listed["bank"].schema.unlabelled_rows == APPLICANTS
    order = AlignmentStore(bank.net.workdir / "state" / "bank").load_order("al")
    assert len(order) == table.rows - APPLICANTS  # training positions cover labelled rows only
    log = (bank.net.workdir / "state" / "bank" / "audit.jsonl").read_text().splitlines()
    opened = [json.loads(line) for line in log if '"train.open"' in line]
    assert opened and opened[-1]["rows"] == table.rows - APPLICANTS


def test_applicants_without_a_label_are_scored_like_the_plaintext_model(bank: Bank) -> None:
    scorer = BankScorer(load_node_config(bank.net.config_path("bank")), CreditPolicy())
    try:
        decisions = scorer.score(bank.applicants[:60], consent="consent-applicants")
    finally:
        scorer.close()
    expected = plaintext_probabilities(bank.net.workdir / "state", bank.tables, "tr",
                                       bank.applicants[:60])
    got = np.asarray([d.probability for d in decisions])
    assert np.abs(got - expected).max() < 1e-4
    assert all(d.reasons != ("no history at this bank",) for d in decisions)  # rows of ours


def test_the_model_report_scores_the_validation_rows_and_compares_the_applicants(
        bank: Bank, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fedcredit.cli.app import app
    from models.vlr.label import split_positions

    job = bank.net.stub().GetJob(coordinator_pb2.GetJobRequest(job_id="tr"), timeout=30)
    metrics = json.loads(job.metrics_json)
    out = tmp_path / "report"

    result = CliRunner().invoke(app, [
        "report", metrics["model_id"], "--bank", "bank", "--consent", "validation-2026-q4",
        "--config", str(bank.net.config_path("bank")), "--segments", str(bank.segments),
        "--out", str(out), "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    labelled = bank.tables["bank"].rows - APPLICANTS
    _, validation = split_positions(labelled, VlrConfig(batch_size=256, max_epochs=2))
    assert report["rows"] == validation.size and "held out" in report["rows_note"]
    # the same rows and model the job validated once at its end, now through joint scoring
    final = metrics["history"][-1]
    assert report["auc"] == pytest.approx(final["auc"], abs=2e-3)
    assert report["ks"] == pytest.approx(final["ks"], abs=2e-2)
    assert set(report["segments"]["tier"]) <= {"1", "2", "3"}
    assert set(report["segments"]["credit_white"]) <= {"0", "1"}
    stability = report["stability"]
    assert report["population_source"] == "the bank's unlabelled applicants"
    assert stability["population_rows"] == APPLICANTS and stability["psi"] >= 0
    page = (out / "report.html").read_text()
    assert json.loads((out / "report.json").read_text())["auc"] == report["auc"]
    assert page.count('class="plotly-graph-div"') == 6
    ids = bank.tables["bank"].ids
    assert not any(i in page or i in result.stdout for i in ids)  # aggregates only
    log = (bank.net.workdir / "state" / "core" / "audit.jsonl").read_text().splitlines()
    assert any(json.loads(line).get("purpose") == "model validation" for line in log)


# the decision service -----------------------------------------------------------------------
def _consent(days: float = 30) -> dict[str, str]:
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    return {"reference": "LOAN-2026-0042", "expires_at": expiry.isoformat()}


@pytest.fixture(scope="module")
def service(bank: Bank) -> Iterator[str]:
    """`fedcredit decide serve` as a real process beside the bank's node."""
    from fedcredit.bench.decide_load import decision_service

    with decision_service(bank.net, "bank") as url:
        yield url


def _bank_features(bank: Bank, row: int) -> dict[str, float | None]:
    table = bank.tables["bank"]
    return {name: (None if np.isnan(v) else float(v))
            for name, v in zip(table.features, table.X[row], strict=True)}


def test_an_applicant_in_no_bank_table_is_scored_from_the_request(bank: Bank,
                                                                  service: str) -> None:
    held = set(bank.tables["bank"].ids)
    ident = next(i for i in bank.tables["core"].ids if i not in held)
    features = _bank_features(bank, 3)
    status, out = call(service + "/v1/decisions", {
        "enterprise_id": ident, "consent": _consent(), "purpose": "working capital line",
        "features": features})
    assert status == 201, out

    state = bank.net.workdir / "state"
    own = PartyModel.load(state / "bank" / "models" / "tr" / "model.json")
    row = np.asarray([[np.nan if features[n] is None else features[n] for n in own.features]])
    logit = own.partial_logits(row, np.asarray([True]))[0]
    others = {n: t for n, t in bank.tables.items() if n != "bank"}
    logit += np.log(plaintext_probabilities(state, others, "tr", [ident])[0])
    logit -= np.log1p(-plaintext_probabilities(state, others, "tr", [ident])[0])
    assert abs(out["pd"] - 1 / (1 + np.exp(-logit))) < 1e-4
    covering = 1 + sum(ident in set(t.ids) for t in others.values())
    assert out["parties_covering"] == covering and out["outcome"] == "decided"
    assert out["grade"] and out["credit_line"] is not None and out["score"] is not None
    assert out["model"]["model_job"] == "tr" and out["policy_version"].startswith("sha256:")
    assert set(out["inputs"]["sources"].values()) == {"request"}

    admission = out["admission"]  # the default strategy: no rules, approve, the policy's line
    assert admission["outcome"] == "approve" and admission["rules_hit"] == []
    assert admission["policy_line"] == out["credit_line"]
    assert set(features) <= set(admission["facts"])

    status, stored = call(f"{service}/v1/decisions/{out['decision_id']}")
    assert status == 200 and stored == out  # everything needed to explain it, kept at the bank
    status, report = call(service + "/v1/strategy/dry-run", {"rules": [
        {"name": "KO-all", "outcome": "knock_out", "when": [{"field": "pd", "op": ">=",
                                                              "value": 0}]}]})
    assert status == 200 and report["replayed"] >= 1, report
    assert report["rule_hits"]["KO-all"] == report["replayed"]
    assert report["line_total_after"] == 0
    status, hits = call(service + "/v1/strategy/hits")
    assert status == 200 and hits == {}  # the live strategy has no rules


def test_request_values_override_the_table_row(bank: Bank, service: str) -> None:
    ident = bank.tables["bank"].ids[10]
    name = bank.tables["bank"].features[0]
    status, out = call(service + "/v1/decisions", {
        "enterprise_id": ident, "consent": _consent(), "features": {name: 1.25}})
    assert status == 201, out
    assert out["inputs"]["features"][name] == 1.25
    assert out["inputs"]["sources"][name] == "request"
    assert set(out["inputs"]["sources"].values()) == {"request", "table"}


@pytest.mark.parametrize(("change", "loc"), [
    ({"features": {"no_such_column": 1.0}}, ["body", "features", "no_such_column"]),
    ({"features": {"FIRST": "twelve"}}, ["body", "features", "FIRST"]),
    ({"enterprise_id": "91110000000000000Z"}, ["body", "enterprise_id"]),
    ({"consent": None}, ["body", "consent"]),
    ({"consent": {"reference": "R-1"}}, ["body", "consent", "expires_at"]),
    ({"consent": _consent(days=-1)}, ["body", "consent", "expires_at"]),
    ({"surprise": 1}, ["body", "surprise"]),
])
def test_a_bad_field_is_a_422_naming_it(bank: Bank, service: str, change: dict[str, Any],
                                         loc: list[str]) -> None:
    first = bank.tables["bank"].features[0]
    body: dict[str, Any] = {"enterprise_id": bank.tables["bank"].ids[0], "consent": _consent()}
    body.update(json.loads(json.dumps(change).replace("FIRST", first)))
    loc = [first if part == "FIRST" else part for part in loc]
    if body.get("consent") is None:
        del body["consent"]
    status, out = call(service + "/v1/decisions", body)
    assert status == 422, out
    assert loc in [e["loc"] for e in out["detail"]]


def test_an_applicant_unknown_to_the_bank_needs_every_model_feature(bank: Bank,
                                                                     service: str) -> None:
    held = set(bank.tables["bank"].ids)
    ident = next(i for i in bank.tables["core"].ids if i not in held)
    features = _bank_features(bank, 3)
    dropped = sorted(features)[0]
    del features[dropped]
    status, out = call(service + "/v1/decisions", {
        "enterprise_id": ident, "consent": _consent(), "features": features})
    assert status == 422 and out["detail"][0]["loc"] == ["body", "features", dropped]
    assert "missing" in out["detail"][0]["msg"]
    assert call(f"{service}/v1/decisions/nosuchdecision")[0] == 404
    status, spec = call(service + "/openapi.json")
    assert status == 200 and "/v1/decisions" in spec["paths"]
    with urllib.request.urlopen(service + "/docs", timeout=30) as page:
        assert page.status == 200


# signed consent -----------------------------------------------------------------------------
def _consent_refusals(bank: Bank, node: str) -> list[dict[str, Any]]:
    log = (bank.net.workdir / "state" / node / "audit.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, log)
            if e["event"] == "score.refused" and "consent" in e["details"].get("reason", "")]


@pytest.mark.parametrize("how", ["unsigned", "expired", "forged", "other ids"])
def test_a_bad_consent_is_refused_and_audited(bank: Bank, how: str) -> None:
    """The coordinator refuses what it can check (signature, expiry) before relaying; a record
    for other pseudonyms (it cannot see them) is refused by every feature node."""
    import grpc
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from crypto.consent import ConsentRecord, sign_consent
    from crypto.score_wire import sealed_ids_bytes

    scorer = BankScorer(load_node_config(bank.net.config_path("bank")), CreditPolicy())
    salt = bytes(16)
    pseudonyms = scorer.pseudonyms([bank.tables["bank"].ids[20]])
    expires = time.time() + (-60 if how == "expired" else 3600)
    record, signature = scorer.consent(salt, pseudonyms, "LOAN-7", "credit assessment",
                                       expires)
    if how == "unsigned":
        signature = b""
    elif how == "forged":  # signed by a key of the same name that is not the pinned one
        rogue = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        signature = sign_consent(rogue, ConsentRecord.model_validate_json(record))
    elif how == "other ids":
        record, signature = scorer.consent(salt, scorer.pseudonyms([bank.tables["bank"].ids[21]]),
                                           "LOAN-7", "credit assessment", expires)
    header = coordinator_pb2.ScoreRequestHeader(
        bank="bank", model_id=scorer.model_id, model_job=scorer.job, consent="LOAN-7",
        purpose="credit assessment", request_no=7, ids=1, consent_record=record,
        consent_signature=signature, sealed_ids_bytes=sealed_ids_bytes(1),
        pseudonym_key=scorer.cache.key_id)
    sealed = scorer._seal_ids(pseudonyms, salt, 7)
    where = ("core", "logistics", "tax") if how == "other ids" else ("coordinator",)
    before = {n: len(_consent_refusals(bank, n)) for n in where}
    try:
        with pytest.raises(grpc.RpcError) as err:
            list(scorer.stub.Score(iter([
                coordinator_pb2.ScoreRequest(header=header),
                *(coordinator_pb2.ScoreRequest(sealed_ids=coordinator_pb2.SealedIds(
                    node=node, sealed=blob)) for node, blob in sealed.items())]), timeout=60))
    finally:
        scorer.close()
    assert "consent" in (err.value.details() or "")
    deadline = time.monotonic() + 10
    while True:  # each node refuses on its own; the coordinator answers after the first
        after = {n: len(_consent_refusals(bank, n)) for n in before}
        if all(after[n] == before[n] + 1 for n in before) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert after == {n: before[n] + 1 for n in before}


def test_a_decision_carries_a_signed_consent_each_feature_node_logs(bank: Bank,
                                                                    service: str) -> None:
    status, out = call(service + "/v1/decisions", {
        "enterprise_id": bank.tables["bank"].ids[30], "consent": _consent()})
    assert status == 201, out
    for node in ("core", "logistics", "tax"):
        log = (bank.net.workdir / "state" / node / "audit.jsonl").read_text().splitlines()
        last = [e for e in map(json.loads, log) if e["event"] == "score"][-1]
        assert last["consent"] == "LOAN-2026-0042" and last["details"]["consent_signature"]


def test_the_service_answers_concurrent_clients_without_errors(bank: Bank, service: str) -> None:
    from fedcredit.bench.decide_load import load_decisions

    figures = load_decisions(service, bank.tables["bank"].ids[100:600], clients=4, seconds=3)
    print(json.dumps(figures))
    assert figures["service_errors"] == 0 and figures["service_requests"] > 4
    assert figures["service_p99_ms"] >= figures["service_p50_ms"] > 0


def _cached(bank: Bank, ids: list[str]) -> int:
    from node.scoring.pseudonym_cache import PseudonymCache, cache_path

    cache = PseudonymCache(cache_path(bank.net.workdir / "state" / "bank"))
    try:
        return len(cache.lookup(ids)[0])
    finally:
        cache.close()


def test_the_service_makes_its_tables_pseudonyms_ahead(bank: Bank, service: str) -> None:
    ids = list(bank.tables["bank"].ids)
    deadline = time.monotonic() + 120
    while _cached(bank, ids) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _cached(bank, ids) == len(ids)  # every table id, asked about or not


def test_portfolio_import_makes_the_booked_ids_pseudonyms_ahead(bank: Bank,
                                                                tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from common.uscc import generate_uscc
    from fedcredit.cli.app import app

    fresh = generate_uscc(np.random.default_rng(42), 30)  # nobody holds them
    book = tmp_path / "book.csv"
    book.write_text("enterprise_id,line,drawn,grade,booked_at,expiry\n" + "".join(
        f"{i},100000,0,B,2026-01-01,2027-01-01\n" for i in fresh))
    args = ["portfolio", "import", str(book), "--config",
            str(bank.net.config_path("bank")), "--json"]
    assert _cached(bank, fresh) == 0
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.output) == {"booked": 30, "pseudonyms_made": 30}
    assert _cached(bank, fresh) == 30
    again = CliRunner().invoke(app, args)
    assert json.loads(again.output) == {"booked": 30, "pseudonyms_made": 0}

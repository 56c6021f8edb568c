"""Joint scoring through real processes: exactness, wire contents, consent, budget, audit."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from fedcredit.demo.parties import party_specs
from fedcredit.evaluate import load_party_tables, plaintext_probabilities
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import synthesize
from node.config import load_node_config
from node.datasource import NodeTable
from node.policy import CreditPolicy
from node.scoring.bank import BankScorer
from proto.fedcredit.v1 import coordinator_pb2
from tests.integration.conftest import run_job, tapped_network
from tests.integration.wiretap import WireTap

Setup = tuple[LocalNetwork, WireTap, dict[str, NodeTable], BankScorer]


@pytest.fixture(scope="module")
def scoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("scoring")
    synth = synthesize(root / "data", enterprises=1500, seed=4)
    specs = party_specs(synth)
    with tapped_network(root, specs) as (net, tap):
        stub = net.stub()
        stub.Align(coordinator_pb2.AlignRequest(label_party="bank", job_id="al"), timeout=300)
        run_job(stub, "tr", "vlr", {"batch_size": 256, "max_epochs": 2},
                features=["core", "logistics", "tax"], model_name="")
        tables = load_party_tables({s.name: s.data for s in specs}, "bank")
        tap.clear()  # from here on, only scoring traffic
        scorer = BankScorer(load_node_config(net.config_path("bank")), CreditPolicy())
        try:
            yield net, tap, tables, scorer
        finally:
            scorer.close()


def _ids(tables: dict[str, NodeTable]) -> list[str]:
    bank = set(tables["bank"].ids)
    elsewhere = [i for i in tables["core"].ids if i not in bank][:40]
    return list(tables["bank"].ids[:300]) + elsewhere + ["91110000000000000X"]


def test_decrypted_probabilities_equal_the_plaintext_model(scoring: Setup) -> None:
    net, _, tables, scorer = scoring
    ids = _ids(tables)
    decisions = scorer.score(ids, consent="consent-batch-1")

    expected = plaintext_probabilities(net.workdir / "state", tables, "tr", ids)
    got = np.asarray([d.probability for d in decisions])
    assert np.abs(got - expected).max() < 1e-4
    holders = {name: set(t.ids) for name, t in tables.items()}
    for d in decisions:
        assert d.parties_covering == sum(d.id in h for h in holders.values())
    assert decisions[-1].parties_covering == 0  # an enterprise nobody knows: neutral parts only
    assert decisions[-1].outcome == "refer" and decisions[-1].grade is None  # a person decides
    assert {d.grade for d in decisions[:-1]} <= {g.grade for g in scorer.policy.grades}


def test_coordinator_handles_only_ciphertexts_and_sealed_pseudonyms(scoring: Setup) -> None:
    _, tap, tables, scorer = scoring
    ids = list(tables["bank"].ids[300:340])
    decisions = scorer.score(ids, consent="consent-batch-2")

    blob = tap.blob()
    assert any(m.endswith("CoordinatorService/Score") for m in tap.methods())  # bank's leg too
    assert not [i for t in tables.values() for i in t.ids if i.encode() in blob]
    for d in decisions:  # no result in any message
        assert np.asarray(d.probability, "<f8").tobytes() not in blob
    pseudonyms = scorer.pseudonyms(ids)
    for k in range(len(ids)):  # the coordinator holds the pseudonym key: it never sees one
        assert pseudonyms[16 * k:16 * (k + 1)] not in blob
    for method, direction, field, data in tap.fields():
        if ".NodeService/" in method and direction == "request":
            # What a feature node is sent: pseudonyms sealed to it, or the bank's signed
            # set-up. Never a sum, a result or another node's part.
            assert field in ("header", "sealed_ids", "setup")
        if field == "sealed_ids" and ".NodeService/" in method:
            assert (len(data) - 16 - 72) % 16 == 0  # salt, pseudonyms, seal


def test_no_feature_node_sees_another_nodes_part(scoring: Setup) -> None:
    _, tap, _, _ = scoring
    sent_to_nodes = [field for method, direction, field, _ in tap.fields()
                     if ".NodeService/" in method and direction == "request"]
    assert sent_to_nodes and not [n for n in sent_to_nodes if n.startswith(("partials", "sums"))]


def test_request_without_consent_is_refused_and_logged(scoring: Setup) -> None:
    net, _, tables, scorer = scoring
    header = coordinator_pb2.ScoreRequestHeader(bank=scorer.party, model_id=scorer.model_id,
                                                model_job=scorer.job, consent="", ids=1)
    sealed = scorer._seal_ids(scorer.pseudonyms([tables["bank"].ids[0]]), bytes(16), 1)
    with pytest.raises(grpc.RpcError) as err:
        list(scorer.stub.Score(iter([
            coordinator_pb2.ScoreRequest(header=header),
            *(coordinator_pb2.ScoreRequest(sealed_ids=coordinator_pb2.SealedIds(
                node=node, sealed=blob)) for node, blob in sealed.items())]),
            timeout=30))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "consent" in (err.value.details() or "")
    audit = (net.workdir / "state" / "coordinator" / "audit.jsonl").read_text()
    assert '"event": "score.refused"' in audit.replace('":"', '": "')


def test_query_budget_is_enforced_per_enterprise_and_logged(scoring: Setup) -> None:
    net, _, tables, scorer = scoring
    ident = next(i for i in tables["core"].ids if i in set(tables["bank"].ids[400:]))
    other = tables["bank"].ids[399]
    for n in range(20):
        scorer.score([ident], consent=f"consent-{n}")
    refused, answered = scorer.score([ident, other], consent="consent-21")
    assert (refused.outcome, refused.grade) == ("refused", None)
    assert "budget" in refused.reason and answered.outcome == "decided"
    audit = (net.workdir / "state" / "core" / "audit.jsonl").read_text()
    assert "score.refused" in audit and "budget" in audit


def test_pseudonyms_kept_under_an_old_key_are_made_again(scoring: Setup) -> None:
    net, _, tables, scorer = scoring
    ident = tables["bank"].ids[450]
    expected = plaintext_probabilities(net.workdir / "state", tables, "tr", [ident])
    current = scorer.cache.key_id
    scorer.cache.store("0123456789abcdef", {ident: bytes(16)})  # as if the key had changed

    decision, = scorer.score([ident], consent="consent-old-key")

    assert abs(decision.probability - expected[0]) < 1e-4 and decision.outcome == "decided"
    assert scorer.cache.key_id == current  # refused by the coordinator, evaluated again


def test_tampered_audit_entry_is_found(scoring: Setup, tmp_path: Path) -> None:
    net, _, _, _ = scoring
    source = net.workdir / "state" / "tax" / "audit.jsonl"
    lines = source.read_text().splitlines()
    target = next(k for k, line in enumerate(lines) if '"score"' in line)
    entry = json.loads(lines[target])
    entry["consent"] = "forged-consent"
    lines[target] = json.dumps(entry, sort_keys=True)
    forged = tmp_path / "audit.jsonl"
    forged.write_text("\n".join(lines) + "\n")

    def verify(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fedcredit.cli.main", "audit", "verify",
                               str(path), "--json"], capture_output=True, text=True, timeout=60)

    intact, broken = verify(source), verify(forged)
    assert intact.returncode == 0 and json.loads(intact.stdout)["ok"]
    assert broken.returncode != 0
    assert json.loads(broken.stdout)["first_bad"] == target + 1

"""Each feature node's own scoring caps, through real processes: ids per request (the bank splits
its batches by the smallest cap the nodes advertise), model versions per enterprise, requests a
day per bank (surviving a restart); every refusal audited, and told by the decision service as a
429 naming the node and the cap."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from common.errors import CapExceeded
from fedcredit.demo.parties import party_specs
from fedcredit.evaluate import load_party_tables
from fedcredit.launcher import LocalNetwork
from fedcredit.synth import synthesize
from node.config import load_node_config
from node.datasource import NodeTable
from node.policy import CreditPolicy
from node.scoring.bank import BankScorer
from node.scoring.data_alerts import request_data_alerts
from proto.fedcredit.v1 import coordinator_pb2
from tests.integration.conftest import run_job
from tests.integration.decision_http import call_with_retry_after

CAPS = {  # each node's own config; per-enterprise caps alike, per-request caps differ
    "core": {"max_ids_per_request": 50, "max_model_versions": 1},
    "logistics": {"max_requests_per_day": 12, "max_model_versions": 1},
    "tax": {"max_model_versions": 1},
}


@dataclass
class Capped:
    net: LocalNetwork
    tables: dict[str, NodeTable]

    def train(self, job: str) -> None:
        run_job(self.net.stub(), job, "vlr", {"batch_size": 256, "max_epochs": 1},
                features=list(CAPS), model_name="")

    def scorer(self) -> BankScorer:
        """A scorer of the bank's latest model."""
        return BankScorer(load_node_config(self.net.config_path("bank")), CreditPolicy())

    def refusals(self, party: str) -> list[str]:
        lines = (self.net.workdir / "state" / party / "audit.jsonl").read_text().splitlines()
        return [entry["details"]["reason"] for entry in map(json.loads, lines)
                if entry["event"] == "score.refused"]


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Capped]:
    root = tmp_path_factory.mktemp("caps")
    synth = synthesize(root / "data", enterprises=1200, seed=8)
    specs = [replace(s, settings={"scoring": CAPS[s.name]}) if s.name in CAPS else s
             for s in party_specs(synth)]
    with LocalNetwork(root, specs) as net:
        net.start(timeout=120)
        net.stub().Align(coordinator_pb2.AlignRequest(label_party="bank", job_id="al"),
                         timeout=300)
        found = Capped(net, load_party_tables({s.name: s.data for s in specs}, "bank"))
        found.train("tr")
        yield found


def _score_rows(net: LocalNetwork, party: str) -> list[int]:
    lines = (net.workdir / "state" / party / "audit.jsonl").read_text().splitlines()
    return [entry["rows"] for entry in map(json.loads, lines) if entry["event"] == "score"]


def test_a_batch_over_one_nodes_max_ids_goes_in_requests_within_it(capped: Capped) -> None:
    ids = list(capped.tables["bank"].ids[:60])
    before = len(_score_rows(capped.net, "core"))
    scorer = capped.scorer()
    try:
        assert scorer.max_ids == 50  # core's cap, said at set-up and relayed by the coordinator
        decisions = scorer.score(ids, consent="caps-1")
    finally:
        scorer.close()
    assert [d.id for d in decisions] == ids  # in order
    assert _score_rows(capped.net, "core")[before:] == [50, 10]  # two requests, two consents
    assert _score_rows(capped.net, "tax")[-2:] == [50, 10]
    assert not any("max_ids_per_request" in r for r in capped.refusals("core"))


def test_a_request_over_one_nodes_max_ids_is_refused_by_it_and_audited(capped: Capped) -> None:
    ids = list(capped.tables["bank"].ids[:60])
    scorer = capped.scorer()
    try:
        scorer.max_ids = 60  # as a bank that ignored the cap the nodes said
        with pytest.raises(CapExceeded) as err:
            scorer._score_request(ids, scorer.pseudonyms(ids), scorer.cache.key_id,
                                  *scorer.own_inputs(ids, None), consent="caps-2",
                                  purpose="credit assessment", expires=time.time() + 600,
                                  version=scorer.view.version)
    finally:
        scorer.close()
    assert (err.value.party, err.value.cap, err.value.retry_after_s) == (
        "core", "max_ids_per_request", None)
    assert "core refused" in str(err.value)
    assert "60 ids in one request; this node answers at most 50 ([scoring] " \
           "max_ids_per_request)" in str(err.value)
    assert any("max_ids_per_request" in r for r in capped.refusals("core"))
    assert not any("max_ids_per_request" in r for r in capped.refusals("tax"))  # tax's own: 1M


def test_an_enterprise_past_its_model_versions_is_refused_alone(capped: Capped) -> None:
    seen, fresh = capped.tables["bank"].ids[100], capped.tables["bank"].ids[101]
    first = capped.scorer()  # model of job tr
    try:
        assert first.score([seen], consent="caps-3")[0].outcome == "decided"
        capped.train("tr2")
        second = capped.scorer()  # the bank's newer model: another linear score of our features
        try:
            refused, answered = second.score([seen, fresh], consent="caps-4")
        finally:
            second.close()
        assert (refused.outcome, refused.grade) == ("refused", None)
        assert answered.outcome == "decided"
        assert first.score([seen], consent="caps-5")[0].outcome == "decided"  # tr: used before
    finally:
        first.close()
    for node in CAPS:
        assert any("[scoring] max_model_versions" in r for r in capped.refusals(node)), node


def _expiry() -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()


def test_an_enterprise_past_its_model_versions_is_a_429_at_the_decision_service(
        capped: Capped) -> None:
    """The enterprise scored under tr, refused under tr2 (above): stored, answered 429."""
    import grpc

    from fedcredit.bench.decide_load import decision_service
    from fedcredit.launcher import free_port
    from proto.fedcredit.v1 import decisions_pb2, decisions_pb2_grpc

    listen = f"127.0.0.1:{free_port()}"
    with decision_service(capped.net, "bank", grpc_listen=listen) as url:  # latest model: tr2
        status, body, retry = call_with_retry_after(url + "/v1/decisions", {
            "enterprise_id": capped.tables["bank"].ids[100],
            "consent": {"reference": "caps-9", "expires_at": _expiry()}})
        with grpc.insecure_channel(listen) as channel:
            stub = decisions_pb2_grpc.DecisionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.Decide(decisions_pb2.DecideRequest(
                    enterprise_id=capped.tables["bank"].ids[100], consent_reference="caps-9",
                    consent_expires_at=_expiry()), timeout=120)
            stored = stub.GetDecision(decisions_pb2.GetDecisionRequest(
                decision_id=dict(err.value.trailing_metadata() or ())["fedcredit-decision-id"]),
                timeout=30)
            fresh = stub.Decide(decisions_pb2.DecideRequest(  # never scored: decided
                enterprise_id=capped.tables["bank"].ids[102], consent_reference="caps-9",
                consent_expires_at=_expiry()), timeout=120)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_model_versions" in (err.value.details() or "")
    assert stored.outcome == "refused"
    assert fresh.outcome == "decided" and fresh.grade and 0 < fresh.pd < 1
    assert status == 429, body
    assert "max_model_versions" in str(body["detail"]) and body["decision_id"]
    assert "core, logistics, tax" in str(body["detail"])
    assert retry is not None and int(retry) > 0


def test_requests_past_a_nodes_daily_cap_stay_refused_after_its_restart(capped: Capped) -> None:
    ids = iter(capped.tables["bank"].ids[200:])
    scorer = capped.scorer()
    try:
        with pytest.raises(CapExceeded) as err:
            for _ in range(13):  # logistics answers 12 requests a day, whatever the others do
                scorer.score([next(ids)], consent="caps-6")
        capped.net.stop_process("logistics")
        capped.net.start_node("logistics")
        capped.net.wait_serving(["logistics"], timeout=120)
        with pytest.raises(CapExceeded) as again:
            scorer.score([next(ids)], consent="caps-7")
    finally:
        scorer.close()
    expected = "has had 12 scoring requests answered today; this node answers at most 12 a day " \
               "([scoring] max_requests_per_day)"
    for error in (err.value, again.value):
        assert (error.party, error.cap) == ("logistics", "max_requests_per_day")
        assert error.retry_after_s is not None and 0 < error.retry_after_s <= 86401
        assert "logistics refused" in str(error)
        assert expected in str(error)
    assert sum("max_requests_per_day" in r for r in capped.refusals("logistics")) == 2
    assert not any("max_requests_per_day" in r for r in capped.refusals("core"))


def test_data_alerts_past_a_nodes_daily_cap_are_refused_as_scoring_is(capped: Capped) -> None:
    """Runs after logistics' daily cap is spent (above): the same `CapExceeded`, audited."""
    scorer = capped.scorer()
    try:
        with pytest.raises(CapExceeded) as err:
            request_data_alerts(scorer, list(capped.tables["bank"].ids[500:510]),
                                consent="caps-10")
    finally:
        scorer.close()
    assert (err.value.party, err.value.cap) == ("logistics", "max_requests_per_day")
    assert err.value.retry_after_s is not None and 0 < err.value.retry_after_s <= 86401
    lines = (capped.net.workdir / "state" / "bank" / "audit.jsonl").read_text().splitlines()
    refused = [e for e in map(json.loads, lines) if e["event"] == "data_alerts.refused"]
    assert refused and refused[-1]["details"]["cap"] == "max_requests_per_day"


def test_the_caps_are_in_each_nodes_own_config(capped: Capped) -> None:
    for node, caps in CAPS.items():
        config = load_node_config(Path(capped.net.config_path(node)))
        assert {k: getattr(config.scoring, k) for k in caps} == caps


def test_the_decision_service_answers_a_daily_cap_refusal_with_429(capped: Capped) -> None:
    """Runs after logistics' daily cap is spent (above): the service names it and the cap, with
    the time to 00:00 UTC."""
    import grpc

    from fedcredit.bench.decide_load import decision_service
    from fedcredit.launcher import free_port
    from proto.fedcredit.v1 import decisions_pb2, decisions_pb2_grpc

    listen = f"127.0.0.1:{free_port()}"
    with decision_service(capped.net, "bank", grpc_listen=listen) as url:
        status, body, retry = call_with_retry_after(url + "/v1/decisions", {
            "enterprise_id": capped.tables["bank"].ids[300],
            "consent": {"reference": "caps-8", "expires_at": _expiry()}})
        with grpc.insecure_channel(listen) as channel, \
                pytest.raises(grpc.RpcError) as err:  # its gRPC API: RESOURCE_EXHAUSTED
            decisions_pb2_grpc.DecisionServiceStub(channel).Decide(
                decisions_pb2.DecideRequest(enterprise_id=capped.tables["bank"].ids[301],
                                            consent_reference="caps-8",
                                            consent_expires_at=_expiry()), timeout=120)
    assert status == 429, body
    assert "logistics refused" in str(body["detail"])
    assert "[scoring] max_requests_per_day" in str(body["detail"])
    assert retry is not None and 0 < int(retry) <= 86401
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "logistics refused" in (err.value.details() or "")
    facts = dict(err.value.trailing_metadata() or ())
    assert facts["fedcredit-cap-party"] == "logistics"
    assert facts["fedcredit-cap"] == "max_requests_per_day"
    assert 0 < int(facts["retry-after"]) <= 86401

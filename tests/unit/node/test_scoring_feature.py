"""Feature node scoring handlers without a server: set-up, answers, consent, budget, limits."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.errors import ProtocolError
from crypto import seal
from crypto.he import scoring as score_he
from crypto.he import unpack_frames
from crypto.pseudonym import PseudonymKey
from crypto.score_wire import ids_seal_context
from models.vlr.scoring import PartyModel
from node.config import NodeConfig, ScoringCaps
from node.datasource import NodeTable
from node.scoring.feature import FeatureScoring
from node.scoring.index import pseudonyms_for
from node.state import NodeState
from proto.fedcredit.v1 import common_pb2, node_pb2

JOB = "tr"
IDS = [f"9111000000000000{k:02d}" for k in range(12)]
KEY = PseudonymKey(bytes(range(1, 33)))  # the coordinator's, here in process


def _evaluate(points: bytes) -> tuple[bytes, str]:
    return KEY.evaluate(points), KEY.key_id


def Scoring(node: NodeState, **kw: Any) -> FeatureScoring:  # noqa: N802 - reads as the class
    return FeatureScoring(node, evaluate=_evaluate, **kw)


class Bank:
    """What a requesting bank holds: its sealing key and CKKS key pair."""

    def __init__(self) -> None:
        self.key = seal.SealingKey.generate()
        self.context = score_he.new_private_context()

    @property
    def peer(self) -> common_pb2.PeerKey:
        return common_pb2.PeerKey(party="bank", sealing_public_key=self.key.public_bytes)

    def setup(self, node: NodeState, *, private: bool = False,
              job: str = JOB) -> node_pb2.ScoreSetupRequest:
        context = (score_he.private_bytes(self.context) if private
                   else score_he.public_bytes(self.context))
        return node_pb2.ScoreSetupRequest(bank=self.peer, algorithm="vlr", model_job=job,
                                          context=context, pseudonym_key=KEY.key_id)

    def request(self, ids: list[str], consent: str = "consent-1", *, declared: int | None = None,
                sealed_for: tuple[str, int] = ("core", 7), node: NodeState | None = None,
                job: str = JOB) -> Iterator[node_pb2.ScorePartialRequest]:
        pseudonyms, _ = pseudonyms_for(ids, _evaluate)
        assert node is not None
        sealed = seal.Sealer(self.key.private_key, node.peer_key.sealing_pk).seal(
            bytes(16) + pseudonyms, ids_seal_context(job, "bank", *sealed_for))
        yield node_pb2.ScorePartialRequest(header=node_pb2.ScorePartialHeader(
            bank="bank", algorithm="vlr", model_job=job, consent=consent, purpose="test",
            request_no=7, ids=len(ids) if declared is None else declared,
            pseudonym_key=KEY.key_id))
        yield node_pb2.ScorePartialRequest(sealed_ids=sealed)

    def decrypt(self, replies: Iterator[node_pb2.ScorePartialReply],
                n: int) -> tuple[np.ndarray, np.ndarray]:
        replies = list(replies)
        assert {r.WhichOneof("body") for r in replies} <= {"partials", "snapshot"}  # LR: no part
        blob = b"".join(r.partials for r in replies)
        return score_he.decrypt_sums(self.context, unpack_frames(blob), n)


@pytest.fixture()
def node(tmp_path: Path) -> NodeState:
    config = NodeConfig(party="core", role="feature", coordinator="127.0.0.1:1",
                        tls={"ca": "ca", "cert": "c", "key": "k"}, state_dir=tmp_path / "core",
                        data={"source": "csv", "path": "core.csv"})
    rng = np.random.default_rng(0)
    table = NodeTable(ids=IDS[:8], features=["a", "b"], X=rng.normal(size=(8, 2)), y=None,
                      source="test")
    state = NodeState(config, table, insecure=True)
    model = PartyModel(party="core", role="feature", job=JOB, features=("a", "b"),
                       weights=np.array([0.5, -1.25, 0.3]), mean=np.zeros(2), scale=np.ones(2))
    for job in (JOB, "tr2"):  # two versions of the model, the same weights
        folder = state.state_dir / "models" / job
        folder.mkdir(parents=True)
        (folder / "model.json").write_text(replace(model, job=job).to_json())
    return state


def _audit(node: NodeState) -> str:
    return (node.state_dir / "audit.jsonl").read_text()


def test_answers_are_the_models_partial_logits_under_the_banks_key(node: NodeState) -> None:
    bank, scoring = Bank(), Scoring(node)
    scoring.setup(bank.setup(node))
    asked = [IDS[3], IDS[10], IDS[0]]  # IDS[10] is unknown here

    logits, covered = bank.decrypt(scoring.partial(bank.request(asked, node=node)), len(asked))

    model = PartyModel.load(node.state_dir / "models" / JOB / "model.json")
    rows, present = np.array([3, 0, 0]), np.array([True, False, True])
    expected = model.partial_logits(node.table.X[rows], present)
    assert np.abs(logits - expected).max() < 1e-5
    assert covered.tolist() == [1, 0, 1]
    assert '"score.setup"' in _audit(node).replace('":"', '": "')
    assert "consent-1" in _audit(node)


def test_set_up_survives_a_restart_and_is_kept_private(node: NodeState) -> None:
    bank = Bank()
    Scoring(node).setup(bank.setup(node))
    stored = node.state_dir / "scoring" / f"bank--{JOB}" / "setup.bin"
    assert stored.stat().st_mode & 0o777 == 0o600

    logits, covered = bank.decrypt(Scoring(node).partial(bank.request([IDS[1]], node=node)), 1)
    assert covered.tolist() == [1]


def test_a_request_without_set_up_says_so(node: NodeState) -> None:
    with pytest.raises(ProtocolError, match="is not set up"):
        list(Scoring(node).partial(Bank().request([IDS[1]], node=node)))


def test_pseudonyms_sealed_for_another_request_or_node_are_refused(node: NodeState) -> None:
    bank, scoring = Bank(), Scoring(node)
    scoring.setup(bank.setup(node))
    for sealed_for in (("tax", 7), ("core", 8)):
        with pytest.raises(ProtocolError, match="sealed pseudonyms"):
            list(scoring.partial(bank.request([IDS[1]], sealed_for=sealed_for, node=node)))
    assert "score.refused" in _audit(node)


def test_a_repeated_pseudonym_is_refused(node: NodeState) -> None:
    bank, scoring = Bank(), Scoring(node)
    scoring.setup(bank.setup(node))
    with pytest.raises(ProtocolError, match="repeated"):
        list(scoring.partial(bank.request([IDS[1], IDS[2], IDS[1]], node=node)))


def test_the_index_is_kept_and_made_again_for_a_new_key(node: NodeState) -> None:
    scoring = Scoring(node)
    rows = scoring.index.current(KEY.key_id, node.table.ids)
    expected, _ = pseudonyms_for(IDS[:8], _evaluate)
    assert rows == {expected[16 * k:16 * (k + 1)]: k for k in range(8)}
    assert scoring.index.path.stat().st_mode & 0o777 == 0o600
    calls: list[int] = []

    def counted(points: bytes) -> tuple[bytes, str]:
        calls.append(len(points))
        return _evaluate(points)

    assert FeatureScoring(node, evaluate=counted).index.current(KEY.key_id, node.table.ids) == rows
    assert not calls  # after a restart: read from disk, not evaluated again
    other = PseudonymKey(bytes(range(2, 34)))
    fresh = FeatureScoring(node, evaluate=lambda p: (other.evaluate(p), other.key_id))
    assert set(fresh.index.current(other.key_id, node.table.ids)).isdisjoint(rows)


def test_no_consent_is_refused_and_logged(node: NodeState) -> None:
    bank, scoring = Bank(), Scoring(node)
    scoring.setup(bank.setup(node))
    with pytest.raises(ProtocolError, match="consent"):
        list(scoring.partial(bank.request([IDS[1]], consent="  ", node=node)))
    assert "score.refused" in _audit(node) and "no consent reference" in _audit(node)


def test_an_enterprise_over_its_daily_budget_is_refused_alone(node: NodeState) -> None:
    bank, scoring = Bank(), Scoring(node, caps=ScoringCaps(daily_budget=2))
    scoring.setup(bank.setup(node))
    for n in range(2):
        list(scoring.partial(bank.request([IDS[2]], consent=f"c{n}", node=node)))

    replies = list(scoring.partial(bank.request([IDS[2], IDS[4], IDS[10]], consent="c3",
                                                node=node)))

    refused = b"".join(r.refused_budget for r in replies)
    assert np.unpackbits(np.frombuffer(refused, np.uint8), count=3).tolist() == [1, 0, 0]
    partials = [r for r in replies if r.WhichOneof("body") == "partials"]
    logits, covered = bank.decrypt(iter(partials), 3)
    assert covered.tolist() == [0, 1, 0]  # the refused id: nothing of ours, as if unknown
    assert abs(logits[0]) < 1e-6
    assert "score.refused" in _audit(node) and "budget" in _audit(node)
    for n in range(2):  # IDS[4] was charged once above: one more, then refused
        replies = list(scoring.partial(bank.request([IDS[4]], consent=f"d{n}", node=node)))
    assert [r.WhichOneof("body") for r in replies][-1] == "refused_budget"


def test_a_batch_without_refusals_sends_no_bitmap(node: NodeState) -> None:
    bank, scoring = Bank(), Scoring(node)
    scoring.setup(bank.setup(node))
    replies = list(scoring.partial(bank.request([IDS[1], IDS[3]], node=node)))
    assert {r.WhichOneof("body") for r in replies} == {"partials", "snapshot"}


def test_sizes_are_checked_before_anything_is_buffered(node: NodeState) -> None:
    bank, scoring = Bank(), Scoring(node)
    scoring.setup(bank.setup(node))

    def never_read() -> Iterator[node_pb2.ScorePartialRequest]:
        yield node_pb2.ScorePartialRequest(header=node_pb2.ScorePartialHeader(
            bank="bank", algorithm="vlr", model_job=JOB, consent="c", ids=10**9))
        raise AssertionError("the handler read past a header it should have refused")

    with pytest.raises(ProtocolError, match="ids"):
        list(scoring.partial(never_read()))
    with pytest.raises(ProtocolError, match="sealed_ids"):  # more ids than declared
        list(scoring.partial(bank.request([IDS[1], IDS[2]], declared=1, node=node)))
    with pytest.raises(ProtocolError, match="cut short"):
        list(scoring.partial(bank.request([IDS[1]], declared=2, node=node)))


def test_an_unknown_algorithm_and_a_label_node_are_refused(node: NodeState) -> None:
    bank = Bank()
    request = bank.setup(node)
    request.algorithm = "gbdt"
    with pytest.raises(ProtocolError, match="gbdt"):
        Scoring(node).setup(request)
    node.role = "label"
    with pytest.raises(ProtocolError, match="only feature nodes"):
        Scoring(node).setup(bank.setup(node))


def test_context_with_a_secret_key_is_refused(node: NodeState) -> None:
    bank = Bank()
    with pytest.raises(ProtocolError, match="secret key"):
        Scoring(node).setup(bank.setup(node, private=True))


def test_a_request_over_max_ids_per_request_is_refused_unread(node: NodeState) -> None:
    bank, scoring = Bank(), Scoring(node, caps=ScoringCaps(max_ids_per_request=2))
    scoring.setup(bank.setup(node))
    list(scoring.partial(bank.request(IDS[:2], node=node)))  # at the cap: answered

    with pytest.raises(ProtocolError, match=r"3 ids in one request; this node answers at most 2 "
                                            r"\(\[scoring\] max_ids_per_request\)"):
        list(scoring.partial(bank.request(IDS[:3], node=node)))
    refusal = [line for line in _audit(node).splitlines() if "score.refused" in line]
    assert len(refusal) == 1 and "max_ids_per_request" in refusal[0]


def test_requests_past_the_daily_cap_are_refused_after_a_restart_too(node: NodeState) -> None:
    caps = ScoringCaps(max_requests_per_day=2)
    bank, scoring = Bank(), Scoring(node, caps=caps)
    scoring.setup(bank.setup(node))
    for n in range(2):
        list(scoring.partial(bank.request([IDS[n]], consent=f"c{n}", node=node)))

    restarted = Scoring(node, caps=caps)  # a new process: counters from the node's SQLite
    with pytest.raises(ProtocolError, match=r"bank has had 2 scoring requests answered today; "
                                            r"this node answers at most 2 a day"):
        list(restarted.partial(bank.request([IDS[3]], consent="c3", node=node)))
    assert "max_requests_per_day" in _audit(node)
    budget = Scoring(node, caps=ScoringCaps(max_requests_per_day=3))  # the operator raised it
    list(budget.partial(bank.request([IDS[3]], consent="c4", node=node)))


def test_an_enterprise_past_its_model_versions_is_refused_alone(node: NodeState) -> None:
    bank, scoring = Bank(), Scoring(node, caps=ScoringCaps(max_model_versions=1))
    for job in (JOB, "tr2"):
        scoring.setup(bank.setup(node, job=job))
    list(scoring.partial(bank.request([IDS[2], IDS[10]], node=node)))  # model JOB

    replies = list(scoring.partial(bank.request([IDS[2], IDS[3], IDS[10]], node=node,
                                                job="tr2")))

    refused = b"".join(r.refused_budget for r in replies)
    assert np.unpackbits(np.frombuffer(refused, np.uint8), count=3).tolist() == [1, 0, 1]
    partials = [r for r in replies if r.WhichOneof("body") == "partials"]
    _, covered = bank.decrypt(iter(partials), 3)
    assert covered.tolist() == [0, 1, 0]  # refused ids: nothing of ours (IDS[10] held nowhere)
    assert "max_model_versions" in _audit(node)
    again = list(scoring.partial(bank.request([IDS[2]], consent="c2", node=node)))  # model JOB
    assert "refused_budget" not in {r.WhichOneof("body") for r in again}


def test_an_answer_names_its_snapshot_and_a_reload_changes_the_values(node: NodeState) -> None:
    bank, scoring = Bank(), Scoring(node)
    scoring.setup(bank.setup(node))
    first = list(scoring.partial(bank.request([IDS[1]], consent="s1", node=node)))
    assert first[0].WhichOneof("body") == "snapshot"
    version = first[0].snapshot.decode()
    assert version == node.snapshot().version
    table = node.table
    X = table.X.copy()
    X[1, 0] += 1.0  # IDS[1]'s value moved in the source
    node.live.loader = lambda cfg, role: replace(table, X=X)
    assert node.live.reload(force=True).outcome == "loaded"
    again = list(scoring.partial(bank.request([IDS[1]], consent="s2", node=node)))
    assert again[0].snapshot.decode() == node.snapshot().version != version
    before, _ = bank.decrypt(iter(first), 1)
    after, _ = bank.decrypt(iter(again), 1)
    assert abs(after[0] - before[0]) > 1e-6  # the new snapshot's values were used

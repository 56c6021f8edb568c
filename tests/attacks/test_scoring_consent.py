"""An unsigned, expired or forged consent is refused and audited at every node (DESIGN §4.5),
through real processes: the coordinator checks it before relaying anything, and each feature
node, reached directly by a relay that forwards it anyway (the coordinator's own certificate),
refuses and audits it on its own.
"""

from __future__ import annotations

import time

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from crypto.consent import ConsentRecord, sign_consent
from crypto.score_wire import sealed_ids_bytes
from fedcredit.demo.parties import FEATURE_PARTIES
from node.scoring.bank import BankScorer
from proto.fedcredit.v1 import coordinator_pb2, node_pb2
from tests.attacks.scoring_network import Scoring

HOW = ("unsigned", "expired", "forged")
SALT = bytes(range(16))


def _refusals(scoring_net: Scoring, party: str) -> int:
    return sum(e["event"] == "score.refused" and "consent" in e["details"].get("reason", "")
               for e in scoring_net.audit(party))


def _bad(scorer: BankScorer, pseudonyms: bytes, how: str) -> tuple[bytes, bytes]:
    expires = time.time() + (-60 if how == "expired" else 3600)
    record, signature = scorer.consent(SALT, pseudonyms, "LOAN-X", "credit assessment", expires)
    if how == "unsigned":
        return record, b""
    if how == "forged":  # a record changed after signing, signed by a key not pinned anywhere
        rogue = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        changed = ConsentRecord.model_validate_json(record).model_copy(
            update={"expires_unix": int(time.time()) + 10 * 365 * 86400})
        return changed.encode(), sign_consent(rogue, changed)
    return record, signature


def _wait(scoring_net: Scoring, parties: tuple[str, ...], before: dict[str, int],
          ) -> dict[str, int]:
    deadline = time.monotonic() + 10
    while True:
        after = {p: _refusals(scoring_net, p) for p in parties}
        if all(after[p] > before[p] for p in parties) or time.monotonic() > deadline:
            return {p: after[p] - before[p] for p in parties}
        time.sleep(0.2)


@pytest.mark.parametrize("how", HOW)
def test_a_bad_consent_is_refused_and_audited_everywhere(scoring_net: Scoring, how: str) -> None:
    parties = ("coordinator", *FEATURE_PARTIES)
    before = {p: _refusals(scoring_net, p) for p in parties}
    scorer = scoring_net.scorer()
    try:
        pseudonyms = scorer.pseudonyms([scoring_net.tables["bank"].ids[7]])
        record, signature = _bad(scorer, pseudonyms, how)
        sealed = scorer._seal_ids(pseudonyms, SALT, 7)
        header = coordinator_pb2.ScoreRequestHeader(
            bank="bank", model_id=scorer.model_id, model_job=scorer.job, consent="LOAN-X",
            purpose="credit assessment", request_no=7, ids=1, consent_record=record,
            consent_signature=signature, sealed_ids_bytes=sealed_ids_bytes(1),
            pseudonym_key=scorer.cache.key_id)
        with pytest.raises(grpc.RpcError) as err:
            list(scorer.stub.Score(iter([
                coordinator_pb2.ScoreRequest(header=header),
                *(coordinator_pb2.ScoreRequest(sealed_ids=coordinator_pb2.SealedIds(
                    node=node, sealed=blob)) for node, blob in sealed.items())]), timeout=60))
        assert "consent" in (err.value.details() or "")
        refused = _wait(scoring_net, ("coordinator",), {"coordinator": before["coordinator"]})
        for node in FEATURE_PARTIES:  # a relay that forwards it anyway
            channel, stub = scoring_net.node_stub(node)
            forward = node_pb2.ScorePartialHeader(
                bank="bank", algorithm="vlr", model_job=scorer.job, consent="LOAN-X",
                purpose="credit assessment", request_no=7, ids=1, consent_record=record,
                consent_signature=signature, pseudonym_key=scorer.cache.key_id)
            with pytest.raises(grpc.RpcError) as err:
                list(stub.ScorePartial(iter([node_pb2.ScorePartialRequest(header=forward),
                                             node_pb2.ScorePartialRequest(
                                                 sealed_ids=sealed[node])]), timeout=60))
            channel.close()
            assert "consent" in (err.value.details() or "")
    finally:
        scorer.close()
    refused |= _wait(scoring_net, FEATURE_PARTIES, {p: before[p] for p in FEATURE_PARTIES})
    print(f"{how} consent: refusals audited {refused}")
    assert all(refused[p] == 1 for p in parties), refused

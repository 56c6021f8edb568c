"""A requesting bank cannot isolate one feature node's partial score or membership (DESIGN §0,
§5: it may learn Σ_F u_F and a coverage count per scored enterprise), through real processes.

The curious bank (`IsolatingBank`, its own software) tries to make only the target node ("core")
match its ids: under the old protocol by sealing its id key to core and a random one to the
others; under pseudonyms the requester cannot choose by sealing the true pseudonyms to core and
another enterprise's to the others. It then reads core's customer list off the coverage counts
and core's partial logit off the sum. The asserts compare it with what the coverage counts allow
(the best guess of core's membership from the counts alone, scored with the ground truth) and
with core's true partial logit (plaintext model minus core's part).
"""

from __future__ import annotations

import grpc
import numpy as np

from common.errors import FedcreditError
from fedcredit.evaluate import plaintext_probabilities
from tests.attacks.scoring_attacks import IsolatingBank
from tests.attacks.scoring_network import JOB, Scoring

TARGET = "core"


def _logit(p: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.log(p) - np.log1p(-p)
    return out


def coverage_bound(coverage: np.ndarray, truth: np.ndarray) -> float:
    """Accuracy of the best guess of membership that is a function of the coverage count alone
    (majority per count, with hindsight): what the counts allow, and no more."""
    right = 0
    for count in np.unique(coverage):
        at = coverage == count
        right += max(int(truth[at].sum()), int((~truth[at]).sum()))
    return right / len(truth)


def test_the_bank_cannot_isolate_one_nodes_membership_or_partial(scoring_net: Scoring) -> None:
    holders = scoring_net.holders()
    universe = sorted(set().union(*(holders[n] for n in holders if n != "bank")))
    ids = [i for i in universe if i not in holders["bank"]][:240]
    truth = np.asarray([i in holders[TARGET] for i in ids])
    coverage_all = np.asarray([sum(i in holders[n] for n in holders) for i in ids])

    scorer = scoring_net.scorer(IsolatingBank)
    assert isinstance(scorer, IsolatingBank)
    scorer.target = TARGET
    try:
        try:
            decisions = scorer.score(ids, consent="isolate-1")
            answered = True
        except (grpc.RpcError, FedcreditError):
            answered = False
        if answered:
            coverage = np.asarray([d.parties_covering for d in decisions])
            logits = _logit(np.asarray([d.probability for d in decisions]))
        else:  # the network refused the crafted request: an honest one is all it gets
            scorer.target = ""
            decisions = scorer.score(ids, consent="isolate-2")
            coverage = np.asarray([d.parties_covering for d in decisions])
            logits = _logit(np.asarray([d.probability for d in decisions]))
    finally:
        scorer.close()

    guess = coverage > 0 if answered else coverage >= 2  # its best reading either way
    accuracy = float((guess == truth).mean())
    bound = coverage_bound(coverage_all, truth)
    state = scoring_net.net.workdir / "state"
    others = {n: t for n, t in scoring_net.tables.items() if n != TARGET}
    u_target = _logit(plaintext_probabilities(state, scoring_net.tables, JOB, ids)) - _logit(
        plaintext_probabilities(state, others, JOB, ids))
    shared = truth & (coverage_all >= 2)  # core holds it and so does another node
    base = _logit(plaintext_probabilities(state, {"bank": scoring_net.tables["bank"]}, JOB,
                                          ids))
    isolated = float((np.abs(logits - base - u_target)[shared] < 1e-3).mean())
    print(f"crafted request answered: {answered}; membership of {TARGET}: accuracy "
          f"{accuracy:.3f}, coverage counts allow {bound:.3f}; partial logit of {TARGET} "
          f"recovered for {isolated:.0%} of "
          f"{int(shared.sum())} enterprises it shares with another node")
    assert not answered  # the nodes were sealed different lists: no sum for anyone
    assert accuracy <= bound + 0.02
    assert isolated <= 0.05

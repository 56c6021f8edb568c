"""A bank that changes its keys, its set-up or its request shapes still gets no more than the
daily budget of answers about one enterprise (DESIGN §0, §4.5), through real processes.

The curious bank runs its own software: between rounds it throws its scoring keys away (new
CKKS key pair, new set-up at every node; under the old protocol also a new id-hash key), and
the coordinator and every feature node are restarted (budgets and the pseudonym key are kept on
disk, so a restart resets nothing), then it starts a
new scorer, and asks about the same enterprise one at a time, in a batch that repeats it (its own
check for repeats switched off), and under new consent references and purposes. It counts the
decisions it got.
"""

from __future__ import annotations

import shutil

import grpc

from common.errors import FedcreditError
from fedcredit.demo.parties import FEATURE_PARTIES
from node.scoring.bank import BankScorer
from node.scoring.budget import DEFAULT_DAILY_BUDGET
from tests.attacks.scoring_attacks import ChurningBank
from tests.attacks.scoring_network import JOB, Scoring

ROUNDS = 3


def _answers(scorer: BankScorer, ids: list[str], target: str, tag: str) -> tuple[int, int]:
    """(answers, budget refusals) about `target` in one request (an error gives neither)."""
    try:
        decisions = scorer.score(ids, consent=f"churn-{tag}", purpose=f"purpose {tag}")
    except (grpc.RpcError, FedcreditError):
        return 0, 0
    about = [d.outcome for d in decisions if d.id == target]
    return sum(o != "refused" for o in about), about.count("refused")


def _restart(scoring_net: Scoring) -> None:
    net = scoring_net.net
    for name in ("coordinator", *FEATURE_PARTIES):
        net.stop_process(name)
    net.start_coordinator()
    for name in FEATURE_PARTIES:
        net.start_node(name)
    net.wait_serving(list(FEATURE_PARTIES), timeout=120)


def test_key_and_shape_churn_gets_no_more_than_the_budget(scoring_net: Scoring) -> None:
    holders = scoring_net.holders()
    target = next(i for i in sorted(holders["core"] & holders["logistics"] & holders["tax"])
                  if i not in holders["bank"])
    filler = sorted(holders["bank"])[:4]
    got, refused_later = 0, 0
    for round_no in range(ROUNDS):
        if round_no == 1:
            _restart(scoring_net)
        shutil.rmtree(scoring_net.state("bank") / "scoring" / JOB, ignore_errors=True)
        scorer = scoring_net.scorer(ChurningBank)  # new keys: a fresh set-up at every node
        try:
            got += _answers(scorer, [target] * 5 + filler, target, f"{round_no}-dup")[0]
            for n in range(DEFAULT_DAILY_BUDGET + 1):
                answered, refused = _answers(scorer, [target], target, f"{round_no}-{n}")
                got += answered
                refused_later += refused if round_no else 0
        finally:
            scorer.close()
    print(f"answers about one enterprise after {ROUNDS} key changes: {got} "
          f"(budget {DEFAULT_DAILY_BUDGET})")
    assert got <= DEFAULT_DAILY_BUDGET
    # after the restarts the network answers (a refusal naming the budget), it is not down
    assert refused_later == (ROUNDS - 1) * (DEFAULT_DAILY_BUDGET + 1)

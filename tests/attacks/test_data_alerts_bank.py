"""A curious bank cannot read a feature node's customer list or name the node that raised a data
alert (DESIGN §0, §5: it may learn the aggregate level and a coverage count), through real
processes.

The bank keeps everything its data-alert requests return (aggregate levels, each node's
snapshot versions and per-feature PSI) and the coverage counts its scoring requests return, for
240 enterprises it does not hold, after the feature nodes' data deteriorated for some SMEs
(`tests.integration.data_alert_network`). Its strongest attacks:
(a) isolation: seal the true pseudonyms to core and another enterprise's to logistics and tax
    (`IsolatingBank`), so that only core's levels make up the sum;
(b) core's customer list: the best guess of membership from everything it holds, i.e. the
    majority per (coverage count, aggregate level) cell, with hindsight;
(c) which node raised an alert: for the enterprises with a positive aggregate, the best guess of
    "core raised it" per (coverage count, aggregate level) cell, with hindsight.
Each is compared with what the coverage counts alone allow (the majority per coverage count).
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from common.errors import FedcreditError
from fedcredit.demo.parties import FEATURE_PARTIES
from node.scoring.data_alerts import request_data_alerts
from tests.attacks.scoring_attacks import IsolatingBank
from tests.integration.data_alert_network import AlertNet, alert_network

TARGET = "core"


@pytest.fixture(scope="module")
def alert_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertNet]:
    with alert_network(tmp_path_factory.mktemp("attacks-alerts")) as found:
        yield found


def best_guess(cells: list[tuple[int, ...]], truth: np.ndarray) -> float:
    """Accuracy of the majority guess per cell, with hindsight: the best any function of the
    cells can do."""
    keys = np.asarray([hash(c) for c in cells])
    right = 0
    for key in np.unique(keys):
        at = keys == key
        right += max(int(truth[at].sum()), int((~truth[at]).sum()))
    return right / max(len(truth), 1)


def test_the_bank_cannot_isolate_a_nodes_levels_or_read_its_customers(
        alert_net: AlertNet) -> None:
    holders = alert_net.holders()
    universe = sorted(set().union(*(holders[n] for n in FEATURE_PARTIES)))
    bad = set(alert_net.shift.deteriorated)
    outside = [i for i in universe if i not in holders["bank"]]
    ids = [i for i in outside if i in bad][:120]
    ids += [i for i in outside if i not in bad][:240 - len(ids)]
    truth = np.asarray([i in holders[TARGET] for i in ids])
    levels = {p: alert_net.node_levels(p) for p in FEATURE_PARTIES}
    raised = np.asarray([levels[TARGET].get(i, 0) > 0 for i in ids])

    scorer = alert_net.scorer(IsolatingBank)
    assert isinstance(scorer, IsolatingBank)
    try:
        scorer.target = TARGET  # (a)
        try:
            request_data_alerts(scorer, ids, consent="isolate-alerts")
            isolated_answered = True
        except (grpc.RpcError, FedcreditError):
            isolated_answered = False
        scorer.target = ""
        found = request_data_alerts(scorer, ids, consent="alerts-1")  # honest, all kept
        coverage = np.asarray([d.parties_covering for d in scorer.score(ids, consent="cov-1")])
    finally:
        scorer.close()

    level = found.level_sum
    both = [(int(c), int(v)) for c, v in zip(coverage, level, strict=True)]
    alone = [(int(c),) for c in coverage]
    membership, membership_bound = best_guess(both, truth), best_guess(alone, truth)
    flagged = level > 0
    naming = best_guess([b for b, f in zip(both, flagged, strict=True) if f], raised[flagged])
    naming_bound = best_guess([a for a, f in zip(alone, flagged, strict=True) if f],
                              raised[flagged])
    print(f"crafted request answered: {isolated_answered}; {TARGET}'s customers read with "
          f"accuracy {membership:.3f} (coverage counts allow {membership_bound:.3f}); "
          f"'{TARGET} raised it' named for {int(flagged.sum())} flagged enterprises with "
          f"accuracy {naming:.3f} (coverage counts allow {naming_bound:.3f}); PSI received "
          f"for {sorted(found.stability)}")
    assert not isolated_answered  # lists that differ from the signed digest: no sum for anyone
    assert flagged.sum() >= 20  # the data did move: there were alerts to attribute
    assert membership <= membership_bound + 0.02
    assert naming <= naming_bound + 0.05
    # the per-feature PSI is the same whatever was asked: nothing in it depends on the ids
    scorer = alert_net.scorer()
    try:
        other = request_data_alerts(scorer, ids[:10], consent="alerts-2")
    finally:
        scorer.close()
    assert other.stability == found.stability

"""Data alerts through real processes: feature nodes' own limits on their own changed data, one
aggregate level per enterprise at the bank, no node's share or membership in what it receives."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from crypto.he import scoring as score_he
from crypto.he import unpack_frames
from fedcredit.demo.parties import FEATURE_PARTIES
from node.scoring.data_alerts import request_data_alerts
from tests.integration.data_alert_network import AlertNet, alert_network


@pytest.fixture(scope="module")
def alerts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertNet]:
    with alert_network(tmp_path_factory.mktemp("alerts")) as found:
        yield found


def test_each_enterprise_gets_the_sum_of_the_nodes_own_levels(alerts: AlertNet) -> None:
    holders = alerts.holders()
    universe = sorted(set().union(*holders.values()))[:700] + ["91110000000000000X"]
    truth = {p: alerts.node_levels(p) for p in FEATURE_PARTIES}
    expected = np.asarray([sum(truth[p].get(i, 0) for p in FEATURE_PARTIES) for i in universe])
    scorer = alerts.scorer()
    try:
        found = request_data_alerts(scorer, universe, consent="MON-1")
    finally:
        scorer.close()
    assert found.level_sum.tolist() == expected.tolist()
    bad = set(alerts.shift.deteriorated)
    held = [k for k, i in enumerate(universe) if i in bad and any(
        i in holders[p] for p in FEATURE_PARTIES)]
    healthy = [k for k, i in enumerate(universe) if i not in bad
               and i not in alerts.shift.improved]
    assert np.mean(found.level_sum[held] > 0) >= 0.9
    assert np.mean(found.level_sum[healthy] > 0) <= 0.02
    assert found.level(len(universe) - 1) == "none"  # held by nobody
    assert set(found.stability) == set(FEATURE_PARTIES)
    assert found.stability["core"]["features"]["order_count"]["band"] in ("stable", "watch",
                                                                         "shifted")
    assert {party for party, _ in found.snapshots} == set(FEATURE_PARTIES)
    # on the wire the bank received one sum per id and nothing from any single node
    to_bank = {field for method, direction, field, _ in alerts.tap.fields()
               if method.endswith("CoordinatorService/DataAlerts") and direction == "response"}
    assert to_bank <= {"level_sums", "refused_budget", "snapshot", "stability"}


def test_a_node_without_the_enterprise_looks_like_one_with_level_zero(alerts: AlertNet) -> None:
    holders = alerts.holders()
    truth = alerts.node_levels("core")
    others = [p for p in FEATURE_PARTIES if p != "core"]
    quiet = {p: alerts.node_levels(p) for p in others}
    # held by core at level 0 (and by no other node), and held by no feature node at all
    with_core = next(i for i, lv in truth.items() if lv == 0 and not any(
        i in holders[p] for p in others))
    nobody = next(i for i in sorted(holders["bank"]) if not any(
        i in holders[p] for p in FEATURE_PARTIES))
    assert all(lv == 0 for p in others for lv in [quiet[p].get(with_core, 0)])
    scorer = alerts.scorer()
    try:
        raw, shapes = [], []
        for ident in (with_core, nobody):
            alerts.tap.clear()
            request_data_alerts(scorer, [ident], consent="MON-2")
            replies = [(field, len(data)) for method, direction, field, data
                       in alerts.tap.fields()
                       if method.endswith("CoordinatorService/DataAlerts")
                       and direction == "response"]
            shapes.append(sorted((f, n) for f, n in replies if f != "snapshot"))
            blob = b"".join(data for method, direction, field, data in alerts.tap.fields()
                            if method.endswith("CoordinatorService/DataAlerts")
                            and direction == "response" and field == "level_sums")
            sums, covered = score_he.decrypt_sums(scorer.context, unpack_frames(blob), 1)
            raw.append(float(sums[0]))
            assert covered[0] == 0  # no coverage count travels with data alerts
    finally:
        scorer.close()
    assert shapes[0] == shapes[1]  # the same messages and sizes
    assert abs(raw[0]) < 1e-4 and abs(raw[1]) < 1e-4  # both decrypt to 0 (CKKS noise only)

"""Data alerts on the monitoring tiers: the policy's mapping, and the worse of score and data."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from common.errors import DataValidationError
from node.policy import NEVER, AlertTier, CreditPolicy, Monitoring, load_policy
from node.portfolio.monitor import NO_TIER, Before, data_tiers, review, source


def _before(n: int) -> Before:
    return Before(pd=np.full(n, 0.03), grade=np.full(n, 1), line=np.full(n, 1e6),
                  drawn=np.full(n, 2e5), days_left=np.full(n, 10.0))


def _tiers(*levels: str | None) -> list[AlertTier]:
    return [AlertTier(tier=f"t{k}", action=f"a{k}", data_level=level)  # type: ignore[arg-type]
            for k, level in enumerate(levels)]


def test_by_default_each_tier_is_reached_by_the_level_of_its_place() -> None:
    assert Monitoring().data_levels() == [1, 2, 3]  # yellow, orange, red
    four = Monitoring(tiers=_tiers(None, None, None, None), cut_on="t1")
    assert four.data_levels() == [1, 2, 3, NEVER]  # a fourth tier: data alerts never reach it
    two = Monitoring(tiers=_tiers(None, "red"), cut_on="t1")
    assert two.data_levels() == [1, 3]


def test_levels_reach_the_worst_tier_at_or_below_them() -> None:
    level = np.array([-1, 0, 1, 2, 3, 7])  # refused, none, yellow, orange, red, a sum past red
    assert data_tiers(Monitoring(), level).tolist() == [NO_TIER, NO_TIER, 0, 1, 2, 2]
    watch = Monitoring(tiers=_tiers("orange", "never", "red"), cut_on="t2")
    assert data_tiers(watch, level).tolist() == [NO_TIER, NO_TIER, NO_TIER, 0, 2, 2]
    off = Monitoring(tiers=_tiers("never", "never", "never"), cut_on="t1")
    assert data_tiers(off, level).tolist() == [NO_TIER] * 6


def test_a_tier_milder_than_the_data_level_before_it_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match=r"monitoring\.tiers\[1\]\.data_level"):
        Monitoring(tiers=_tiers("orange", "yellow"), cut_on="t0")
    with pytest.raises(ValidationError, match=r"monitoring\.tiers\[2\]\.data_level"):
        Monitoring(tiers=_tiers("orange", "never", "orange"), cut_on="t0")
    with pytest.raises(ValidationError, match="data_level"):
        AlertTier(tier="t", action="a", data_level="amber")  # type: ignore[arg-type]


def test_a_policy_file_names_the_bad_field(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "policy.toml"
    path.write_text('[monitoring]\ncut_on = "b"\n[[monitoring.tiers]]\ntier = "a"\n'
                    'action = "freeze"\ndata_level = "purple"\n[[monitoring.tiers]]\n'
                    'tier = "b"\naction = "cut"\n')
    with pytest.raises(DataValidationError, match=r"monitoring\.tiers\.0\.data_level"):
        load_policy(path)
    path.write_text('[monitoring]\ncut_on = "b"\n[[monitoring.tiers]]\ntier = "a"\n'
                    'action = "freeze"\ndata_level = "red"\n[[monitoring.tiers]]\n'
                    'tier = "b"\naction = "cut"\n')  # b by its place: orange, below red
    with pytest.raises(DataValidationError, match=r"monitoring\.tiers\[1\]\.data_level"):
        load_policy(path)
    assert CreditPolicy().monitoring.data_cut == 1.0


def test_the_worse_of_score_and_data_decides_the_action() -> None:
    m = Monitoring()  # yellow freezes, from orange the line is cut
    before = _before(6)
    # healthy score; score yellow; score orange; healthy; healthy; score orange
    pd = np.array([0.03, 0.07, 0.1, 0.03, 0.01, 0.1])
    grade = np.array([1, 1, 3, 1, 0, 3])
    target = np.array([2e6, 2e6, 1e5, 2e6, 5e6, 1e5])
    level = np.array([0, 2, 1, 1, 0, 2])  # none, orange, yellow, yellow, none, orange
    out = review(m, before, pd, grade, target, level)
    assert out.score_tier.tolist() == [NO_TIER, 0, 1, NO_TIER, NO_TIER, 1]
    assert out.data_tier.tolist() == [NO_TIER, 1, 0, 0, NO_TIER, 1]
    assert out.tier.tolist() == [NO_TIER, 1, 1, 0, NO_TIER, 1]
    assert source(out.score_tier, out.data_tier).tolist() == ["", "data", "score", "data", "",
                                                              "both"]
    # data orange: cut to drawn (data_cut 1, the grade's line is higher); score orange: to the
    # grade's line; yellow from data: hold, no raise; an improving account without alerts rises
    assert out.line.tolist() == [1e6, 2e5, 2e5, 1e6, 1.5e6, 2e5]
    assert out.change.tolist() == ["hold", "cut", "cut", "hold", "raise", "cut"]
    assert out.recredit.tolist() == [True, False, False, True, True, False]


def test_data_cut_takes_a_share_of_the_undrawn_part_within_max_cut() -> None:
    before = _before(2)
    pd, grade = np.full(2, 0.03), np.full(2, 1)
    target = np.full(2, 2e6)
    level = np.array([2, 0])
    half = review(Monitoring(data_cut=0.5), before, pd, grade, target, level)
    assert half.line.tolist() == [6e5, 1e6]  # 1M - 0.5 × 800k undrawn
    bounded = review(Monitoring(data_cut=1.0, max_cut=0.25), before, pd, grade, target, level)
    assert bounded.line.tolist() == [7.5e5, 1e6]
    none = review(Monitoring(data_cut=0.0), before, pd, grade, target, level)
    assert none.line.tolist() == [1e6, 1e6] and none.tier.tolist() == [1, NO_TIER]


def test_without_data_levels_the_review_is_the_scores_alone() -> None:
    before = _before(3)
    pd = np.array([0.03, 0.13, 0.25])
    grade = np.array([1, 1, 3])
    target = np.array([2e6, 2e6, 1e5])
    alone = review(Monitoring(), before, pd, grade, target)
    zero = review(Monitoring(), before, pd, grade, target, np.zeros(3, dtype=np.int64))
    assert alone.tier.tolist() == zero.tier.tolist() == alone.score_tier.tolist()
    assert alone.line.tolist() == zero.line.tolist()
    assert alone.data_tier.tolist() == [NO_TIER] * 3

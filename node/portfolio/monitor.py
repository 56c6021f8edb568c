"""Early warning and dynamic lines for a re-scored portfolio (pure, vectorised).

Each account is compared with its last review: the worst tier of the policy's monitoring whose
criterion holds (PD past a level, PD a multiple of before, grades lost, or the feature nodes'
aggregate data-alert level at or above the tier's `data_level`) raises an alert with that
tier's action, and says its source: "score", "data" or "both" (both reach that worst tier);
the worse tier decides the action: from the `cut_on` tier up the line is cut towards the new
grade's line, and when the data reach that tier also by `data_cut` of its undrawn part (the
lower of the two; never below the drawn amount, at most `max_cut` per review); an improving grade
without an alert raises the line towards the new grade's line (at most `max_raise` per
review); lines expiring within `recredit_days` are renewed for `term_days` unless cut or
alerted from `cut_on` up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from node.policy import NEVER, Monitoring

NO_TIER = -1


@dataclass(frozen=True)
class Before:
    """Each account as last reviewed."""

    pd: np.ndarray
    grade: np.ndarray  # index into the policy's grades (0 best)
    line: np.ndarray
    drawn: np.ndarray
    days_left: np.ndarray  # days to expiry


@dataclass(frozen=True)
class Outcome:
    """What the review decides per account."""

    tier: np.ndarray  # index into monitoring.tiers, NO_TIER for none: the worse of the two
    score_tier: np.ndarray  # the tier the score reaches
    data_tier: np.ndarray  # the tier the feature nodes' data-alert level reaches
    line: np.ndarray
    change: np.ndarray  # "cut", "raise", "hold"
    recredit: np.ndarray  # renewed at this review
    lapse: np.ndarray  # expiring and not renewed


def tiers(monitoring: Monitoring, before: Before, pd: np.ndarray, grade: np.ndarray,
          ) -> np.ndarray:
    """The worst tier each account reaches (NO_TIER for none); NaN PDs reach none."""
    rise = pd - before.pd
    rose = rise >= monitoring.min_pd_rise
    dropped = grade - before.grade
    out = np.full(pd.size, NO_TIER)
    with np.errstate(invalid="ignore"):
        for k, tier in enumerate(monitoring.tiers):
            hit = rose & ((pd >= tier.pd_above) | (pd >= tier.pd_ratio * before.pd))
            hit |= dropped >= tier.grade_drop
            out = np.where(hit & ~np.isnan(pd), k, out)
    return out


def data_tiers(monitoring: Monitoring, level: np.ndarray) -> np.ndarray:
    """The worst tier each aggregate data level reaches (NO_TIER for none; a level below 1,
    such as a refused id's -1, reaches none; a sum above red counts as red)."""
    reach = np.asarray(monitoring.data_levels())
    capped = np.minimum(np.asarray(level), NEVER - 1)  # a sum over nodes: red at most
    hit = capped[:, None] >= reach[None, :]
    worst = reach.size - 1 - np.argmax(hit[:, ::-1], axis=1)
    out: np.ndarray = np.where(hit.any(axis=1), worst, NO_TIER)
    return out


def source(score_tier: np.ndarray, data_tier: np.ndarray) -> np.ndarray:
    """What reached each account's tier: "score", "data", "both" ("" for no tier)."""
    tier = np.maximum(score_tier, data_tier)
    by_score, by_data = (score_tier == tier) & (tier >= 0), (data_tier == tier) & (tier >= 0)
    out: np.ndarray = np.where(by_score & by_data, "both",
                               np.where(by_score, "score", np.where(by_data, "data", "")))
    return out


def review(monitoring: Monitoring, before: Before, pd: np.ndarray, grade: np.ndarray,
           target: np.ndarray, data_level: np.ndarray | None = None) -> Outcome:
    """Tiers, new lines and re-credit; `target` is the policy's line at the new grade,
    `data_level` each account's aggregate data-alert level (None: not asked)."""
    score_tier = tiers(monitoring, before, pd, grade)
    data_tier = (np.full(pd.size, NO_TIER) if data_level is None
                 else data_tiers(monitoring, data_level))
    tier = np.maximum(score_tier, data_tier)
    cut_from = [t.tier for t in monitoring.tiers].index(monitoring.cut_on)
    severe = tier >= cut_from
    target = np.nan_to_num(target)
    undrawn = np.maximum(before.line - before.drawn, 0)
    by_data = np.where(data_tier >= cut_from, before.line - monitoring.data_cut * undrawn, np.inf)
    floor = np.maximum(before.line * (1 - monitoring.max_cut), before.drawn)
    cut = np.minimum(np.maximum(np.minimum(target, by_data), floor), before.line)
    improved = (grade < before.grade) & (tier == NO_TIER)
    raised = np.maximum(np.minimum(target, before.line * (1 + monitoring.max_raise)), before.line)
    line = np.where(severe, cut, np.where(improved, raised, before.line))
    line = np.round(line, -3)
    change = np.where(line < before.line, "cut", np.where(line > before.line, "raise", "hold"))
    expiring = before.days_left <= monitoring.recredit_days
    renew = expiring & ~severe & (target > 0)
    return Outcome(tier=tier, score_tier=score_tier, data_tier=data_tier, line=line,
                   change=change, recredit=renew, lapse=expiring & ~renew)

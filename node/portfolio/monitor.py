"""Early warning and dynamic lines for a re-scored portfolio (pure, vectorised).

Each account is compared with its last review: the worst tier of the policy's monitoring whose
criterion holds (PD past a level, PD a multiple of before, grades lost) raises an alert with
that tier's action; from the `cut_on` tier up the line is cut towards the new grade's line
(never below the drawn amount, at most `max_cut` per review); an improving grade without an
alert raises the line towards the new grade's line (at most `max_raise` per review); lines
expiring within `recredit_days` are renewed for `term_days` unless cut or alerted from `cut_on` up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from node.policy import Monitoring

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

    tier: np.ndarray  # index into monitoring.tiers, NO_TIER for none
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


def review(monitoring: Monitoring, before: Before, pd: np.ndarray, grade: np.ndarray,
           target: np.ndarray) -> Outcome:
    """Tiers, new lines and re-credit; `target` is the policy's line at the new grade."""
    tier = tiers(monitoring, before, pd, grade)
    cut_from = [t.tier for t in monitoring.tiers].index(monitoring.cut_on)
    severe = tier >= cut_from
    target = np.nan_to_num(target)
    cut = np.maximum(np.maximum(target, before.line * (1 - monitoring.max_cut)), before.drawn)
    cut = np.minimum(cut, before.line)
    improved = (grade < before.grade) & (tier == NO_TIER)
    raised = np.maximum(np.minimum(target, before.line * (1 + monitoring.max_raise)), before.line)
    line = np.where(severe, cut, np.where(improved, raised, before.line))
    line = np.round(line, -3)
    change = np.where(line < before.line, "cut", np.where(line > before.line, "raise", "hold"))
    expiring = before.days_left <= monitoring.recredit_days
    renew = expiring & ~severe & (target > 0)
    return Outcome(tier=tier, line=line, change=change, recredit=renew, lapse=expiring & ~renew)

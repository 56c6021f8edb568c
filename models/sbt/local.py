"""SecureBoost in one process: the declared driver over role objects, and joint scoring."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.runtime import LocalRun as LocalRun
from models.runtime import run_local as run_declared
from models.sbt import StepKey
from models.sbt.algorithm import ALGORITHM
from models.sbt.feature import FeatureParty
from models.sbt.label import LabelParty
from models.sbt.scoring import FeatureScorer, LabelScorer, ScoreRelay


def run_local(
    label: LabelParty,
    features: Sequence[FeatureParty],
    *,
    capture: bool = False,
    stop_after_tree: int | None = None,
    label_name: str = "label",
    resume: bool = False,
) -> LocalRun:
    """Build trees until L has `config.trees` of them (or pause after `stop_after_tree`; new
    roles that `load_state_dict()` the paused ones' state continue with `resume=True`)."""
    by_name = {f.name: f for f in features}
    if tuple(sorted(by_name)) != label.feature_parties:
        raise ValueError(f"L expects parties {label.feature_parties}, got {sorted(by_name)}")
    return run_declared(ALGORITHM, (label_name, label), by_name, label.config, job_id=label.job,
                        stop_after=stop_after_tree, capture=capture, resume=resume)


def score_local(
    label: LabelParty,
    features: Sequence[FeatureParty],
    positions: np.ndarray,
    own_rows: np.ndarray,
    *,
    request: int = 0,
) -> tuple[np.ndarray, int]:
    """Jointly score training positions (L's columns of them in `own_rows`): margins, bytes."""
    key = StepKey(label.job, request, 0, "score")
    scorer = LabelScorer(label)
    asked = scorer.request(key, positions, own_rows)
    if not features:
        return scorer.finish(key, None), 0
    parts = {f.name: FeatureScorer(f).score(key, asked) for f in features}
    combined = ScoreRelay(label.he.public_bytes(), suite=label.suite).combine(key, parts)
    moved = len(asked) * len(features) + sum(map(len, parts.values())) + len(combined)
    return scorer.finish(key, combined), moved

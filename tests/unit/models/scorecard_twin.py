"""The pooled scorecard a federated one is compared with: the same plaintext training (vertical
LR's centralised twin) on pooled WOE columns with the same bins, turned into points alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.binning.bins import ColumnBins
from models.metrics import auc
from models.scorecard import ScorecardConfig
from models.scorecard.points import PartyCard
from models.vlr import FeatureAlignment
from models.vlr.centralized import pooled_design, train_centralized
from models.vlr.label import split_positions
from models.vlr.preprocess import Standardizer


@dataclass(frozen=True)
class PooledCard:
    cards: dict[str, PartyCard]
    auc: float  # the twin's, on the job's validation rows
    sklearn_auc: float  # scikit-learn's unregularised LR on the same pooled WOE columns


def woe_matrix(bins: Sequence[ColumnBins], X: np.ndarray) -> np.ndarray:
    return np.stack([b.transform(X[:, j]) for j, b in enumerate(bins)], axis=1)


def pooled_scorecard(label: tuple[str, Sequence[ColumnBins], np.ndarray], y: np.ndarray,
                     features: Mapping[str, tuple[Sequence[ColumnBins], np.ndarray]],
                     config: ScorecardConfig) -> PooledCard:
    """`label` = (party, its selected bins, its raw columns in that order); features alike,
    every row held (the same ids, in the same order)."""
    from sklearn.linear_model import LogisticRegression

    n = y.size
    everyone = FeatureAlignment(n, np.arange(n), np.arange(n))
    own = woe_matrix(label[1], label[2])
    others = {p: woe_matrix(b, X) for p, (b, X) in features.items()}
    design, penalized = pooled_design(own, [(w, everyone) for w in others.values()], config)
    fit = train_centralized(design, y, penalized, config)
    train, validation = split_positions(n, config)
    w = fit.weights
    cards, at = {}, own.shape[1] + 1
    scaler = Standardizer.fit(own[train])
    cards[label[0]] = PartyCard(label[0], "label", "pooled", config.binning_job, tuple(label[1]),
                                w[: own.shape[1]] / scaler.scale, scaler.mean,
                                float(w[own.shape[1]]), config.factor, config.offset)
    for party, woe in others.items():
        k = woe.shape[1]
        scaler = Standardizer.fit(woe[train])
        cards[party] = PartyCard(party, "feature", "pooled", config.binning_job,
                                 tuple(features[party][0]), w[at: at + k] / scaler.scale,
                                 scaler.mean, 0.0, config.factor, config.offset)
        at += k
    pooled = np.hstack([own, *others.values()])
    sk = LogisticRegression(C=np.inf, max_iter=1000).fit(pooled[train], y[train])
    logits = design[validation] @ w
    return PooledCard(cards, auc(y[validation], logits),
                      auc(y[validation], sk.decision_function(pooled[validation])))

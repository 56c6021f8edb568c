"""The pooled scorecard a federated one is compared with (tests, the demo): the same plaintext
training (vertical LR's centralised twin) on pooled WOE columns with the same bins, turned into
points alike; and scikit-learn's unregularised LR on the same columns as the modellers' reference.
It reads every party's state folder, as only a tool on one machine can."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.binning.algorithm import ALGORITHM as BINNING
from models.binning.bins import ColumnBins
from models.binning.feature import load_bins
from models.metrics import auc
from models.scorecard import ScorecardConfig
from models.scorecard.points import PartyCard
from models.scorecard.scoring import SCORECARD_SCORING
from models.vlr import FeatureAlignment
from models.vlr.centralized import pooled_design, train_centralized
from models.vlr.label import split_positions
from models.vlr.preprocess import Standardizer
from node.alignment import AlignmentStore
from node.columns import model_columns
from node.datasource import NodeTable

Columns = tuple[Sequence[ColumnBins], np.ndarray]  # a party's bins and its WOE columns


@dataclass(frozen=True)
class PooledCard:
    cards: dict[str, PartyCard]
    auc: float  # the twin's, on the job's validation rows
    sklearn_auc: float  # scikit-learn's unregularised LR on the same pooled WOE columns


def woe_matrix(bins: Sequence[ColumnBins], X: np.ndarray,
               held: np.ndarray | None = None) -> np.ndarray:
    return np.stack([b.transform(X[:, j], held) for j, b in enumerate(bins)], axis=1)


def pooled_scorecard(label: tuple[str, Sequence[ColumnBins], np.ndarray], y: np.ndarray,
                     features: Mapping[str, Columns], config: ScorecardConfig) -> PooledCard:
    """`label` = (party, its bins, its WOE columns); `features` alike; rows in the job's
    training order (every party's row k is the same enterprise)."""
    from sklearn.linear_model import LogisticRegression

    n = y.size
    everyone = FeatureAlignment(n, np.arange(n), np.arange(n))
    own = label[2]
    design, penalized = pooled_design(own, [(w, everyone) for _, w in features.values()],
                                      config)
    w = train_centralized(design, y, penalized, config).weights
    train, validation = split_positions(n, config)
    scaler = Standardizer.fit(own[train])
    k = own.shape[1]
    cards = {label[0]: PartyCard(label[0], "label", "pooled", config.binning_job,
                                 tuple(label[1]), w[:k] / scaler.scale, scaler.mean,
                                 float(w[k]), config.factor, config.offset)}
    at = k + 1
    for party, (bins, woe) in features.items():
        scaler = Standardizer.fit(woe[train])
        cards[party] = PartyCard(party, "feature", "pooled", config.binning_job, tuple(bins),
                                 w[at: at + woe.shape[1]] / scaler.scale, scaler.mean, 0.0,
                                 config.factor, config.offset)
        at += woe.shape[1]
    pooled = np.hstack([own, *(woe for _, woe in features.values())])
    sk = LogisticRegression(C=np.inf, max_iter=1000).fit(pooled[train], y[train])
    return PooledCard(cards, auc(y[validation], design[validation] @ w),
                      auc(y[validation], sk.decision_function(pooled[validation])))


def compare_scorecard(state_root: Path, tables: Mapping[str, NodeTable], label: str,
                      align_job: str, config: ScorecardConfig) -> PooledCard:
    """The pooled twin of a scorecard job from every party's table, bins and alignment."""
    def bins(party: str) -> list[ColumnBins]:
        kept = {c.name: c for c in load_bins((state_root / party / "models" /
                                              config.binning_job / BINNING.model_file)
                                             .read_bytes())}
        return [kept[n] for n in config.of(party)]

    bank = tables[label].training_view()
    assert bank.y is not None
    order = AlignmentStore(state_root / label).load_order(align_job)
    names = config.of(label)
    own = model_columns(bank, names, party=label, model="scorecard")[order]
    features: dict[str, Columns] = {}
    parties = dict.fromkeys(c.split(":", 1)[0] for c in config.characteristics)
    for party in (p for p in parties if p != label):
        found = AlignmentStore(state_root / party).load_feature(align_job)
        columns = model_columns(tables[party], config.of(party), party=party, model="scorecard")
        values = np.full((found.n_rows, columns.shape[1]), np.nan)
        held = np.zeros(found.n_rows, bool)
        values[found.positions] = columns[found.own_rows]
        held[found.positions] = True
        features[party] = (bins(party), woe_matrix(bins(party), values, held))
    return pooled_scorecard((label, bins(label), woe_matrix(bins(label), own)),
                            bank.y[order].astype(np.float64), features, config)


def max_points_difference(state_root: Path, job: str, pooled: PooledCard) -> float:
    """Largest |federated − pooled| points of any bin of any party's characteristic."""
    worst = 0.0
    for party, twin in pooled.cards.items():
        card, _ = SCORECARD_SCORING.load(state_root / party / "models" / job, job)
        for j in range(len(card.columns)):
            worst = max(worst, float(np.max(np.abs(card.slot_points(j) - twin.slot_points(j)))))
        if party == next(iter(pooled.cards)):
            worst = max(worst, abs(card.base_points - twin.base_points))
    return worst

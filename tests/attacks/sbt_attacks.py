"""The best attacks we know on SecureBoost transcripts (issue 12), as plain functions.

Attack 1 (a curious feature node F ranks rows by label):
  `sampled_every_tree`: with GOSS, the rows sampled at each tree's root (a histogram request's
  positions) always include the large-gradient rows, i.e. the defaulters; F counts how often each
  row is sampled.
  `membership_features`: without sampling, F rebuilds every row's node at every level of every
  tree from the positions it is sent (smaller child by request, sibling by subtraction from the
  parent, both children of its own splits) and fits a model on a few rows whose labels it knows.
Attack 2 (the bank L solves bin sums for F's bins): `solve_bins` finds, for every node L got
  exact per-bin sums of its own gradients for, the subsets of the node's rows whose (G, H) sums
  equal a bin's, by exhaustive search over subsets of a few rows (a bin, or the complement of a
  bin within the node). A row is recovered only when it lies in every matching subset, so every
  claim is certain given the transcript.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from math import comb
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models.sbt.feature import LEAF
from tests.attacks.sbt_transcript import BankView, FeatureView

# --- attack 1 -------------------------------------------------------------------------------


def sampled_every_tree(view: FeatureView) -> np.ndarray:
    """Per row, the fraction of trees whose root histogram request carried it."""
    counts = np.zeros(view.n_rows)
    trees = 0
    for levels in view.histogram:
        if levels and 0 in levels[0]:
            counts[levels[0][0]] += 1
            trees += 1
    return counts / max(trees, 1)


@dataclass(frozen=True)
class Marking:
    marked: int
    precision: float
    recall: float
    base_rate: float


def mark(labels: np.ndarray, marked: np.ndarray) -> Marking:
    """Precision and recall of a marked set against the labels (no mark: the base rate)."""
    y = labels.astype(bool)
    base = float(y.mean())
    if not marked.any():
        return Marking(0, base, 0.0, base)
    return Marking(int(marked.sum()), float(y[marked].mean()), float(marked[y].mean()), base)


def node_paths(view: FeatureView) -> np.ndarray:
    """(rows, trees * depth) node id of every row at levels 1..depth of every tree; -1 unknown.

    Level d+1 from level d: both children of F's own splits from its answers; for the bank's
    splits the requested (smaller) child from the request, the sibling as the parent's remaining
    rows; a leaf's rows stay where they are."""
    n = view.n_rows
    columns = []
    for tree, topology in enumerate(view.topology):
        depth = len(view.histogram[tree])
        node = np.zeros(n, np.int64)  # every row starts at the root
        for level in range(depth):
            nxt = node.copy()
            for parent, rows in view.split[tree][level].items():
                left = view.left[tree][level][parent]
                nxt[rows] = np.where(left, 2 * parent + 1, 2 * parent + 2)
            if level + 1 < depth:
                for child, rows in view.histogram[tree][level + 1].items():
                    parent = (child - 1) // 2
                    if parent in view.split[tree][level]:
                        continue
                    sibling = child + 1 if child % 2 else child - 1
                    nxt[node == parent] = sibling
                    nxt[rows] = child
            for parent in np.unique(node):
                if topology[parent] == LEAF:
                    nxt[node == parent] = parent
            node = nxt
            columns.append(node.copy())
    return np.stack(columns, axis=1) if columns else np.zeros((n, 0), np.int64)


def one_hot(paths: np.ndarray) -> np.ndarray:
    blocks = [(paths[:, j, None] == np.unique(paths[:, j])[None, :]) for j in range(paths.shape[1])]
    return np.hstack(blocks).astype(np.float64) if blocks else np.zeros((paths.shape[0], 0))


def _impute(columns: np.ndarray) -> np.ndarray:
    missing = np.isnan(columns)
    return np.hstack([np.where(missing, 0.0, columns), missing.any(axis=0)[None, :] * missing])


def _models() -> list[Callable[[], Any]]:
    return [
        lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000)),
        lambda: RandomForestClassifier(300, min_samples_leaf=3, random_state=0),
    ]


def known_label_auc(inputs: np.ndarray, labels: np.ndarray, known: int, seeds: int = 5) -> float:
    """The best, over a regularised logistic regression and a random forest, of the mean AUC on
    the other rows of a model fit on `known` random labelled rows (stratified draws, so each fit
    sees both classes)."""
    y = labels.astype(int)
    best = 0.0
    for model in _models():
        scores = []
        for seed in range(seeds):
            rng = np.random.default_rng([seed, 12])
            pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
            k = max(2, round(known * y.mean()))
            train = np.concatenate([rng.choice(pos, k, replace=False),
                                    rng.choice(neg, known - k, replace=False)])
            test = np.setdiff1d(np.arange(y.size), train)
            fitted = model().fit(inputs[train], y[train])
            scores.append(roc_auc_score(y[test], fitted.predict_proba(inputs[test])[:, 1]))
        best = max(best, float(np.mean(scores)))
    return best


def own_inputs(own: np.ndarray) -> np.ndarray:
    return _impute(np.asarray(own, dtype=np.float64))


def membership_inputs(view: FeatureView, own: np.ndarray) -> np.ndarray:
    return np.hstack([own_inputs(own), one_hot(node_paths(view))])


# --- attack 2 -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeResult:
    """One node-column the bank attacked: how many of its rows' F bins it pinned down."""

    rows: int
    recovered: int  # rows claimed with certainty
    correct: int  # claimed rows whose bin is right
    chance: float  # expected right guesses on the claimed rows, guessing the node's modal bin


@dataclass(frozen=True)
class Solved:
    """Row-column pairs whose F bin the bank pinned down in nodes of at least `floor` rows."""

    floor: int
    pairs: int  # row-column pairs in the attacked nodes
    recovered: int
    correct: int
    chance: float

    @classmethod
    def of(cls, results: list[NodeResult], floor: int) -> Solved:
        kept = [r for r in results if r.rows >= floor]
        return cls(floor, sum(r.rows for r in kept), sum(r.recovered for r in kept),
                   sum(r.correct for r in kept), sum(r.chance for r in kept))


class _Sums:
    """Every subset of at most `most` of a node's rows, sorted by its G sum, per size."""

    def __init__(self, g: np.ndarray, h: np.ndarray, most: int) -> None:
        self.g, self.h, self.most = g, h, most
        self.by_size = []
        for k in range(1, min(most, g.size) + 1):
            index = (np.stack(np.triu_indices(g.size, 1), axis=1) if k == 2 else
                     np.array(list(combinations(range(g.size), k)), dtype=np.int64))
            sg, sh = g[index].sum(axis=1), h[index].sum(axis=1)
            order = np.argsort(sg, kind="stable")
            self.by_size.append((index[order], sg[order], sh[order]))

    def matches(self, target_g: int, target_h: int) -> list[np.ndarray] | None:
        """All subsets with sums (target_g, target_h); None when the search cannot be complete
        (a matching subset could have more than `most` rows)."""
        if target_h == 0 and target_g == 0:
            return [np.zeros(0, np.int64)]
        low, high = int(self.h.min()), int(self.h.max())
        if low <= 0:
            return None
        k_min, k_max = max(1, -(-target_h // high)), target_h // low
        if k_max > self.most and k_max <= self.g.size:
            return None
        found: list[np.ndarray] = []
        for index, sg, sh in self.by_size[k_min - 1:k_max]:
            lo, hi = np.searchsorted(sg, [target_g, target_g + 1])
            found.extend(index[lo:hi][sh[lo:hi] == target_h])
        return found


def reach(rows: int, budget: int = 400_000) -> int:
    """The largest subset size (at most 4) whose subsets of a node's rows number <= budget."""
    return max(k for k in range(1, 5) if k == 1 or comb(rows, k) <= budget)


def solve_bins(view: BankView, truth: np.ndarray) -> list[NodeResult]:
    """Attack every node-column L got bin sums for: bins (or complements of bins within the
    node) of up to `reach(node rows)` rows are searched exhaustively. `truth` (F's bin codes)
    only scores the claims."""
    results = []
    for tree, levels in enumerate(view.sums):
        gq, hq = view.gq[tree], view.hq[tree]
        for nodes in levels:
            for rows, g_bins, h_bins in nodes.values():
                g, h = gq[rows], hq[rows]
                sums = _Sums(g, h, reach(rows.size))
                total_g, total_h = int(g.sum()), int(h.sum())
                for column in range(g_bins.shape[0]):
                    known = np.full(rows.size, -1)
                    for b in np.flatnonzero(h_bins[column]):
                        tg, th = int(g_bins[column, b]), int(h_bins[column, b])
                        inside = sums.matches(tg, th)
                        if inside:  # rows in every subset that sums to the bin's sums
                            common = set(inside[0].tolist()).intersection(
                                *(m.tolist() for m in inside[1:]))
                            known[sorted(common)] = b
                        outside = sums.matches(total_g - tg, total_h - th)
                        if outside:  # rows in no subset that sums to the rest of the node
                            anywhere = set().union(*(m.tolist() for m in outside))
                            known[sorted(set(range(rows.size)) - anywhere)] = b
                    claimed = known >= 0
                    true = truth[rows, column]
                    modal = np.bincount(true).max() / rows.size
                    results.append(NodeResult(int(rows.size), int(claimed.sum()),
                                              int((known[claimed] == true[claimed]).sum()),
                                              float(claimed.sum() * modal)))
    return results

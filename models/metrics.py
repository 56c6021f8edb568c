"""Binary-classification metrics on scores, for every algorithm: log loss, AUC, KS, Gini, the
ROC and KS curves, equal-frequency decile tables (lift, gains) and population stability (PSI).

Scores are risk-oriented: a higher score means more likely bad (a PD or a logit).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt


def _class_counts(y: np.ndarray) -> tuple[int, int]:
    positives = int(np.count_nonzero(y))
    return positives, int(y.size) - positives


def log_loss(y: np.ndarray, logits: np.ndarray) -> float:
    """Mean logistic loss of labels y in {0,1} for logits z (numerically stable)."""
    y, z = np.asarray(y, dtype=np.float64), np.asarray(logits, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def taylor_loss_terms(y: np.ndarray, logits: np.ndarray) -> float:
    """Sum of u^2 - 4 z u (z = 2y - 1): what label-private LR computes under encryption."""
    y, u = np.asarray(y, dtype=np.float64), np.asarray(logits, dtype=np.float64)
    return float(np.sum(u * u - 4.0 * (2.0 * y - 1.0) * u))


def taylor_loss(terms: float, n: int) -> float:
    """Second-order Taylor logistic loss log 2 - z u / 2 + u^2 / 8, averaged over n rows, from
    the sum of `taylor_loss_terms`: the validation loss label-private LR stops early on."""
    return math.log(2.0) + terms / (8.0 * n)


def auc(y: npt.ArrayLike, score: npt.ArrayLike, *, undefined: float = math.nan) -> float:
    """Area under the ROC curve: Mann-Whitney U from average ranks (ties count one half).

    With one class only the AUC is undefined: ``undefined`` is returned (NaN unless asked).
    """
    positive = np.asarray(y) != 0
    positives, negatives = _class_counts(positive)
    if positives == 0 or negatives == 0:
        return undefined
    _, inverse, counts = np.unique(np.asarray(score), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average_rank = ends - (counts - 1) / 2.0
    rank_sum = float(average_rank[inverse][positive].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def ks(y: np.ndarray, score: np.ndarray) -> float:
    """Largest gap between the positives' and negatives' score distributions (ties grouped)."""
    y = np.asarray(y) != 0
    positives, negatives = _class_counts(y)
    if positives == 0 or negatives == 0:
        return float("nan")
    _, inverse = np.unique(np.asarray(score), return_inverse=True)
    pos_at = np.bincount(inverse, weights=y.astype(np.float64))
    neg_at = np.bincount(inverse, weights=(~y).astype(np.float64))
    gap = np.cumsum(pos_at) / positives - np.cumsum(neg_at) / negatives
    return float(np.max(np.abs(gap)))


def gini(y: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Gini coefficient (accuracy ratio) 2 AUC - 1: 0 for a random score, 1 for a perfect one."""
    return 2.0 * auc(y, score) - 1.0


def _by_descending_score(y: np.ndarray, score: np.ndarray,
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, bads and goods per distinct score, riskiest (highest score) first."""
    values, inverse = np.unique(score, return_inverse=True)
    bads = np.bincount(inverse, weights=y.astype(np.float64), minlength=values.size)[::-1]
    rows = np.bincount(inverse, minlength=values.size)[::-1].astype(np.float64)
    return values[::-1], rows, bads


def roc_curve(y: npt.ArrayLike, score: npt.ArrayLike,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, threshold) at every distinct score, from (0, 0)
    (threshold +inf) to (1, 1): a row is called bad when its score >= threshold. The points of
    scikit-learn's `roc_curve(..., drop_intermediate=False)`."""
    positive = np.asarray(y) != 0
    positives, negatives = _class_counts(positive)
    if positives == 0 or negatives == 0:
        raise ValueError("a ROC curve needs both classes")
    values, rows, bads = _by_descending_score(positive, np.asarray(score, dtype=np.float64))
    tpr = np.concatenate([[0.0], np.cumsum(bads) / positives])
    fpr = np.concatenate([[0.0], np.cumsum(rows - bads) / negatives])
    return fpr, tpr, np.concatenate([[np.inf], values])


def ks_curve(y: npt.ArrayLike, score: npt.ArrayLike,
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(share of the population, cumulative share of bads, of goods) taking rows from the
    riskiest score down, from (0, 0, 0) to (1, 1, 1); the KS is the largest gap between the
    last two (ties grouped, so it equals `ks`)."""
    positive = np.asarray(y) != 0
    positives, negatives = _class_counts(positive)
    if positives == 0 or negatives == 0:
        raise ValueError("a KS curve needs both classes")
    _, rows, bads = _by_descending_score(positive, np.asarray(score, dtype=np.float64))
    share = np.concatenate([[0.0], np.cumsum(rows) / positive.size])
    return (share, np.concatenate([[0.0], np.cumsum(bads) / positives]),
            np.concatenate([[0.0], np.cumsum(rows - bads) / negatives]))


def quantile_edges(score: npt.ArrayLike, bins: int) -> np.ndarray:
    """Edges of up to `bins` equal-frequency bins: the empirical quantiles (observed scores, numpy's
    "inverted_cdf"), repeated edges dropped. A bin (lo, hi] then always holds the score at its
    upper edge, so none is empty; ties fill fewer bins than asked."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    values = np.asarray(score, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no scores to bin")
    k = np.arange(bins + 1)
    at = np.maximum((k * values.size + bins - 1) // bins - 1, 0)  # ceil(k n / bins) - 1, exact
    edges: np.ndarray = np.unique(np.sort(values)[at])
    return edges


def bin_of(score: npt.ArrayLike, edges: np.ndarray) -> np.ndarray:
    """Index of the bin (lo, hi] of `edges` each score falls in, 0 the lowest; scores at or
    below the first edge go to bin 0 and above the last edge to the last bin. Equal scores
    always share a bin."""
    interior = edges[1:-1]
    index: np.ndarray = np.searchsorted(interior, np.asarray(score, dtype=np.float64),
                                        side="left")
    return index


def decile_table(y: npt.ArrayLike, score: npt.ArrayLike, bins: int = 10,
                 points: npt.ArrayLike | None = None) -> list[dict[str, float]]:
    """The equal-frequency table modellers read, riskiest bin (highest score) first.

    Per bin: rows, bads, goods, bad rate, score range (and `points` range, the bank's policy
    score, if given), lift (bin bad rate / overall bad rate), cumulative rows, bads and goods as
    shares of their totals (cumulative bads is the gains curve), cumulative bad rate and lift,
    and the KS at the bin's end (|cumulative bads - cumulative goods|). Ties never straddle a
    bin, so heavily tied scores give fewer than `bins` rows.
    """
    bad = np.asarray(y) != 0
    values = np.asarray(score, dtype=np.float64)
    positives, negatives = _class_counts(bad)
    if positives == 0 or negatives == 0:
        raise ValueError("a decile table needs both classes")
    edges = quantile_edges(values, bins)
    count = max(edges.size - 1, 1)
    rank = count - 1 - bin_of(values, edges)  # 0: the riskiest bin
    rows = np.bincount(rank, minlength=count).astype(np.float64)
    bads = np.bincount(rank, weights=bad.astype(np.float64), minlength=count)
    overall = positives / bad.size
    cum_rows, cum_bads = np.cumsum(rows), np.cumsum(bads)
    cum_goods = cum_rows - cum_bads
    extra = np.asarray(points, dtype=np.float64) if points is not None else None
    table = []
    for k in range(count):
        inside = rank == k
        row = {"bin": k + 1, "rows": int(rows[k]), "bads": int(bads[k]),
               "goods": int(rows[k] - bads[k]), "bad_rate": bads[k] / rows[k],
               "min_score": float(values[inside].min()),
               "max_score": float(values[inside].max()),
               "lift": bads[k] / rows[k] / overall,
               "cum_rows": cum_rows[k] / bad.size, "cum_bads": cum_bads[k] / positives,
               "cum_goods": cum_goods[k] / negatives,
               "cum_bad_rate": cum_bads[k] / cum_rows[k],
               "cum_lift": cum_bads[k] / cum_rows[k] / overall,
               "ks": abs(cum_bads[k] / positives - cum_goods[k] / negatives)}
        if extra is not None:
            row["min_points"] = float(extra[inside].min())
            row["max_points"] = float(extra[inside].max())
        table.append({key: float(v) if isinstance(v, np.floating) else v
                      for key, v in row.items()})
    return table


PSI_FLOOR = 1e-4
"""The share an empty PSI bin counts as (the log ratio is undefined at 0)."""


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike, bins: int = 10,
        ) -> tuple[float, list[dict[str, float]]]:
    """Population stability index of `actual` scores against `expected` ones, over the
    equal-frequency bins of `expected`: sum over bins of (a - e) ln(a / e), shares floored at
    `PSI_FLOOR`. Under 0.1 is usually read as stable, over 0.25 as shifted. Returns the index
    and per bin its score range (of the expected population), both shares and its term."""
    base = np.asarray(expected, dtype=np.float64)
    new = np.asarray(actual, dtype=np.float64)
    if new.size == 0:
        raise ValueError("no scores in the population to compare")
    edges = quantile_edges(base, bins)
    count = max(edges.size - 1, 1)
    e = np.bincount(bin_of(base, edges), minlength=count) / base.size
    a = np.bincount(bin_of(new, edges), minlength=count) / new.size
    ef, af = np.maximum(e, PSI_FLOOR), np.maximum(a, PSI_FLOOR)
    terms = (af - ef) * np.log(af / ef)
    lower = np.concatenate([[-np.inf], edges[1:-1]])
    upper = np.concatenate([edges[1:-1], [np.inf]])
    table = [{"bin": k + 1, "lower": float(lower[k]), "upper": float(upper[k]),
              "expected": float(e[k]), "actual": float(a[k]), "psi": float(terms[k])}
             for k in range(count)]
    return float(terms.sum()), table


def score_histogram(y: npt.ArrayLike, score: npt.ArrayLike, bins: int = 20,
                    ) -> dict[str, list[float]]:
    """Counts of goods and bads over `bins` equal-width score intervals (shared edges)."""
    bad = np.asarray(y) != 0
    values = np.asarray(score, dtype=np.float64)
    edges = np.histogram_bin_edges(values, bins=bins)
    goods, _ = np.histogram(values[~bad], bins=edges)
    bads, _ = np.histogram(values[bad], bins=edges)
    return {"edges": edges.tolist(), "goods": goods.astype(float).tolist(),
            "bads": bads.astype(float).tolist()}

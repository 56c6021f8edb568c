"""SecureBoost trees and the label party's arithmetic: packed sums, split gains, sampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.sbt import SbtConfig
from models.sbt.feature import ABSENT, LEAF

MIN_GAIN = 1e-6  # XGBoost's kRtEps: a split must reduce the loss by more than this
PACKED_BITS = 58  # |sum G| + 2^k sum H stays below 2^58 = t/2


@dataclass
class Tree:
    """One boosted tree in heap order (children of i: 2i+1, 2i+2). owner: ABSENT, LEAF,
    0 for L's own splits, p >= 1 for feature party p-1 (sorted names). F's thresholds are not here:
    its nodes hold F's record id only."""

    owner: np.ndarray
    feature: np.ndarray
    bin: np.ndarray
    threshold: np.ndarray  # L's own splits only
    missing_left: np.ndarray
    record: np.ndarray
    value: np.ndarray  # leaf weights, learning rate applied

    @classmethod
    def empty(cls, depth: int) -> Tree:
        size = 2 ** (depth + 1) - 1
        return cls(
            np.full(size, ABSENT, np.int64),
            np.full(size, -1, np.int64),
            np.full(size, -1, np.int64),
            np.full(size, np.nan),
            np.zeros(size, bool),
            np.full(size, -1, np.int64),
            np.zeros(size),
        )

    def leaves(self) -> np.ndarray:
        return np.flatnonzero(self.owner == LEAF)

    def equal(self, other: Tree) -> bool:
        return all(
            np.array_equal(getattr(self, f), getattr(other, f), equal_nan=f == "threshold")
            for f in ("owner", "feature", "bin", "threshold", "missing_left", "record", "value")
        )


TREE_FIELDS = ("owner", "feature", "bin", "threshold", "missing_left", "record", "value")


def trees_state(trees: list[Tree], depth: int) -> dict[str, np.ndarray]:
    """Trees as stacked arrays (one row per tree) for a checkpoint."""
    empty = Tree.empty(depth)
    return {f"tree_{f}": np.stack([getattr(t, f) for t in trees]) if trees
            else np.zeros((0, getattr(empty, f).size), getattr(empty, f).dtype)
            for f in TREE_FIELDS}


def trees_from_state(state: dict[str, object], depth: int) -> list[Tree]:
    """The trees `trees_state` stacked; a checkpoint of another depth is refused."""
    size = 2 ** (depth + 1) - 1
    arrays = [np.asarray(state[f"tree_{f}"]) for f in TREE_FIELDS]
    if any(a.ndim != 2 or a.shape != arrays[0].shape or a.shape[1] != size for a in arrays):
        raise ValueError(f"checkpoint trees do not have {size} nodes each")
    return [Tree(*(a[i].copy() for a in arrays)) for i in range(arrays[0].shape[0])]


@dataclass
class TreeReport:
    """What L tells the driver after a tree: training loss, AUC and KS (train = test), all from
    L's own margins (KS None in reports written before it was kept)."""

    tree: int
    loss: float
    auc: float
    splits: int
    ks: float | None = None


def quantize(
    g: np.ndarray, h: np.ndarray, plain_modulus: int
) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """Fixed-point G, H with the most bits that keep every packed sum G + 2^k H below t/2."""
    for bits in range(30, 0, -1):
        gq = np.rint(g * 2.0**bits).astype(np.int64)
        hq = np.rint(h * 2.0**bits).astype(np.int64)
        shift = int(np.abs(gq).sum()).bit_length() + 1
        if (int(hq.sum()) << shift) + (1 << (shift - 1)) < (1 << PACKED_BITS):
            packed = ((gq + (hq << np.int64(shift))) % plain_modulus).astype(np.uint64)
            return bits, shift, gq, hq, packed
    raise ValueError("gradients do not fit the packed plaintext even at 1 bit")


def unpack_sums(
    residues: np.ndarray, shift: int, plain_modulus: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact (sum G, sum H) from packed residues mod t."""
    v = residues.astype(np.int64)
    v = np.where(v >= plain_modulus // 2, v - plain_modulus, v)
    hs = (v + (np.int64(1) << np.int64(shift - 1))) >> np.int64(shift)
    return v - (hs << np.int64(shift)), hs


def split_gains(
    g: np.ndarray, h: np.ndarray, g_total: float, h_total: float, config: SbtConfig
) -> np.ndarray:
    """Loss reduction (features, bins, 2) for 'bin <= b goes left', missing right (0) / left (1)."""
    bins = config.bins
    cg, ch = np.cumsum(g[:, :bins], axis=1), np.cumsum(h[:, :bins], axis=1)
    gl = np.stack([cg, cg + g[:, bins, None]], axis=-1)
    hl = np.stack([ch, ch + h[:, bins, None]], axis=-1)
    gr, hr, lam = g_total - gl, h_total - hl, config.reg_lambda
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = gl**2 / (hl + lam) + gr**2 / (hr + lam) - g_total**2 / (h_total + lam)
    ok = (hl >= config.min_child_weight) & (hr >= config.min_child_weight) & np.isfinite(gain)
    return np.where(ok, gain, -np.inf)


def sample_rows(g: np.ndarray, config: SbtConfig, tree: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows used by a tree and their weights (GOSS amplifies the sampled small gradients)."""
    n = g.size
    rng = np.random.default_rng([config.seed, 7, tree])
    weights = np.ones(n)
    if config.goss is not None:
        top, other = config.goss
        order = np.argsort(-np.abs(g), kind="stable")
        n_top, n_other = int(top * n), int(other * n)
        rest = rng.permutation(order[n_top:])[:n_other]
        sampled = np.zeros(n, bool)
        sampled[order[:n_top]] = True
        sampled[rest] = True
        weights[rest] = (1.0 - top) / other
        return sampled, weights
    if config.subsample >= 1.0:
        return np.ones(n, bool), weights
    sampled = np.zeros(n, bool)
    sampled[rng.permutation(n)[: max(1, int(round(config.subsample * n)))]] = True
    return sampled, weights

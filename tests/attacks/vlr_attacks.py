"""The best attacks we know on a label-private vertical-LR transcript, one group per curious party.

Each takes what the party holds (tests/attacks/vlr_transcript.py) and returns its guess; scoring
against the truth is the tests' job. Plain numpy/scipy, plus SEAL's NTT through `crypto.he` to
read ciphertext bytes as a party without the key can read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from scipy.optimize import linprog, lsq_linear

from crypto.he import lr_coeffs, seal_bytes
from tests.attacks.vlr_transcript import BatchView, Decryption, FeatureView, JobTranscript, Masks

# --- CKKS slots of an integer polynomial ---------------------------------------------------------


def decode(coeffs: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The real slot values SEAL's CKKS decoder gives for the polynomial `coeffs` (floats, any
    size): slot j is the polynomial at ζ^(3^j), ζ = exp(iπ/N) (SEAL 4's slot order)."""
    c = np.asarray(coeffs, dtype=np.float64)
    n = c.size
    odd = n * np.fft.ifft(c * np.exp(1j * np.pi * np.arange(n) / n))  # at ζ^(2k+1), k < N
    powers = np.array([pow(3, j, 2 * n) for j in range(n // 2)])
    out: np.ndarray = odd[(powers - 1) // 2].real / scale
    return out


def c0_slots(lr: Any, data: bytes) -> np.ndarray:
    """A ciphertext read without the key: its first polynomial decoded as if it were the
    plaintext (what decrypting with a secret key of 0 gives), at the ciphertext's own scale."""
    out = []
    for ct in lr.unpack(data):
        c0 = lr_coeffs.from_ntt(lr, seal_bytes.ciphertext_raw(ct)[0])
        out.append(decode(np.array(c0, dtype=np.float64), float(ct.scale)))
    return np.concatenate(out)


# --- attack 1: the feature node on the labels ----------------------------------------------------


@dataclass(frozen=True)
class LabelGuess:
    positions: np.ndarray  # training positions, one per guess (a row may repeat across batches)
    labels: np.ndarray  # 0/1


def score_labels(guess: LabelGuess, labels: np.ndarray) -> tuple[float, float]:
    """(accuracy, majority-class baseline) over the guessed rows."""
    truth = labels[guess.positions]
    share = float(truth.mean())
    return float((guess.labels == truth).mean()), max(share, 1.0 - share)


def _bounded(a: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Bounded least squares over y in [0, 1]^n (the LP relaxation's closest point)."""
    fit = lsq_linear(a, target, bounds=(0.0, 1.0), method="trf", lsmr_tol="auto")
    out: np.ndarray = np.asarray(fit.x)
    return out


def _vertex_lp(cost: np.ndarray, a_eq: np.ndarray, b_eq: np.ndarray,
               bounds: list[tuple[float, float | None]]) -> np.ndarray:
    """min cost·z s.t. a_eq z = b_eq within `bounds`, at a vertex: HiGHS's interior-point method
    with crossover. Its time is steady (about 9 s on the wide job's L1 LP at every target tried),
    where the dual simplex on the inequality form stalled past 240 s on some targets: that cost
    a CI run its 1,200 s timeout. Every LP here is feasible and bounded by construction, so a
    solve that does not end optimal is an error, never a silently weaker attack."""
    fit = linprog(cost, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs-ipm")
    if fit.status != 0:
        raise RuntimeError(f"attack LP {a_eq.shape} not solved: {fit.message}")
    out: np.ndarray = np.asarray(fit.x)
    return out


def _l1_lp(a: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The LP over the 0/1 relaxation: min ||a y - target||_1 over y in [0, 1]^n (an exact 0/1
    solution is a vertex of the box; the LP lands on vertices), in equality form with the
    residual split in two: a y - r⁺ + r⁻ = target, r± ≥ 0."""
    m, n = a.shape
    eye = np.eye(m)
    z = _vertex_lp(np.r_[np.zeros(n), np.ones(2 * m)], np.hstack([a, -eye, eye]), target,
                   [(0.0, 1.0)] * n + [(0.0, None)] * (2 * m))
    return z[:n]


def _solve(a: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """Every solver of the attack on a y = target: least squares (min-norm), bounded least
    squares and the L1 LP over y in [0, 1]^n, each rounded to 0/1."""
    plain = np.linalg.lstsq(a, target, rcond=None)[0]
    return {name: (y > 0.5).astype(np.int64) for name, y in
            (("lstsq", plain), ("bounded", _bounded(a, target)), ("lp", _l1_lp(a, target)))}


def labels_from_final_weights(design: np.ndarray, train: np.ndarray,
                              weights: np.ndarray) -> LabelGuess:
    """What a party knowing only its final weights (and its own rows and their training
    positions, which it may know) can do, without labels and without knowing how many epochs
    ran. Gradient descent from w = 0 leaves w = -Σ_t (η/b_t) X_t^T d_t with d = ½ - y + ¼u and
    each training row once per epoch, so X^T (y - ½) = k w for some k > 0 (first order in u).
    The 0/1 vector y is a vertex of the box; when the node is wide enough (p/n above ~1/2,
    Donoho-Tanner) its image is a vertex of the projected box too, reached by the LP
    max k s.t. X^T y - k w = X^T ½, y ∈ [0, 1]^n."""
    x = design[train]
    n = train.size
    y = _vertex_lp(np.r_[np.zeros(n), -1.0], np.column_stack([x.T, -weights]),
                   x.T @ np.full(n, 0.5), [(0.0, 1.0)] * n + [(0.0, None)])[:n]
    return LabelGuess(train, (y > 0.5).astype(np.int64))


def score_ceiling(design: np.ndarray, rows: np.ndarray, weights: np.ndarray,
                  labels: np.ndarray) -> float:
    """Not an attack: the accuracy of the best threshold on F's own final score u_F = X w_F over
    `rows`, the threshold chosen with the labels. What its final model's ranking of those rows is
    worth at most to any rule "label 1 above some score"; on the validation rows (never trained
    on) it is the model's genuine predictive power, on the training rows that plus its overfit."""
    score = design[rows] @ weights
    truth = labels[rows]
    order = np.argsort(score)
    ones_above = truth.sum() - np.r_[0.0, np.cumsum(truth[order])]  # label-1 rows above cut k
    zeros_below = np.r_[0.0, np.cumsum(1.0 - truth[order])]
    return float((ones_above + zeros_below).max() / rows.size)


def labels_from_training(view: FeatureView, learning_rate: float,
                         best: int | None = None) -> dict[str, LabelGuess]:
    """The same equations with the batches in the order they ran and their sizes (the positions
    L sent), η, and the epoch the final weights are from (F is told it with them); the node's
    weights during training stand in as the final weights scaled by progress (it never sees
    them). To first order in ¼u_L: Σ_t X_t^T y_t / b_t = w/η + Σ_t X_t^T (½ + ¼ X_t w_(t-1)) / b_t.
    `best` replaces the epoch F was told (to try another)."""
    if best is None:
        best = view.best_epoch
    steps = [b for b in view.batches if b.epoch <= best]
    x, w = view.design, view.final_weights
    a = np.zeros((x.shape[1], x.shape[0]))
    target = w / learning_rate
    for t, b in enumerate(steps):
        xb = x[b.positions]
        a[:, b.positions] += xb.T / b.positions.size
        target = target + xb.T @ (0.5 + 0.25 * xb @ (w * t / len(steps))) / b.positions.size
    rows = view.train
    return {f"transcript {solver}": LabelGuess(rows, guess)
            for solver, guess in _solve(a[:, rows], target).items()}


def _batch_guess(design: np.ndarray, view: BatchView, d_hat: np.ndarray,
                 weights: np.ndarray) -> np.ndarray:
    """The old protocol's per-batch attack on X_B^T d = g, with d read off the ciphertext: least
    squares for d when the batch has no more rows than the node has columns, else bounded least
    squares over y ∈ [0, 1]^b, rounded."""
    x = design[view.positions]
    rows, cols = x.shape
    g = x.T @ d_hat[:rows]
    shift = 0.5 + 0.25 * (x @ weights)
    if cols >= rows:
        d = np.linalg.lstsq(x.T, g, rcond=None)[0]
        out: np.ndarray = (shift - d > 0.5).astype(np.int64)
        return out
    fit = lsq_linear(x.T, x.T @ shift - g, bounds=(0.0, 1.0), method="bvls")
    rounded: np.ndarray = (np.asarray(fit.x) > 0.5).astype(np.int64)
    return rounded


def labels_from_ciphertexts(view: FeatureView, lr: Any) -> LabelGuess:
    """Per batch, every received [d] read as if it were a plaintext (`c0_slots`) and solved as
    the old protocol's gradient was; weights during training stand in as the final weights."""
    steps = len(view.batches)
    guesses = [_batch_guess(view.design, b, c0_slots(lr, b.residual),
                            view.final_weights * t / steps)
               for t, b in enumerate(view.batches)]
    return LabelGuess(np.concatenate([b.positions for b in view.batches]),
                      np.concatenate(guesses))


# --- attack 2: the bank on a feature node's columns ----------------------------------------------


def host_columns_r2(features: np.ndarray, host: np.ndarray, known: np.ndarray) -> np.ndarray:
    """The bank's rebuild of a feature node's columns from per-row values it decrypted.

    `features` is (rows, k): per validation row, the values the bank holds; `host` (rows, columns)
    the node's true values; the bank knows the rows `known`. Regress each column on [1, features]
    over the known rows, predict the others; R² per column on the rows the bank did not know.
    """
    design = np.column_stack([np.ones(features.shape[0]), features])
    unknown = np.setdiff1d(np.arange(host.shape[0]), known)
    coef = np.linalg.lstsq(design[known], host[known], rcond=None)[0]
    residual = host[unknown] - design[unknown] @ coef
    spread = host[unknown] - host[unknown].mean(axis=0)
    out: np.ndarray = 1.0 - (residual**2).sum(axis=0) / (spread**2).sum(axis=0)
    return out


def known_draws(rows: int, known: int, draws: int) -> list[np.ndarray]:
    """`draws` seeded choices of the `known` enterprises whose true values the bank holds."""
    return [np.random.default_rng([5, i]).choice(rows, size=known, replace=False)
            for i in range(draws)]


def mean_r2(features: np.ndarray, host: np.ndarray, draws: Sequence[np.ndarray]) -> np.ndarray:
    """`host_columns_r2` averaged over which enterprises the bank knows: the attack's expected
    R² per column (one draw of 20 rows swings a column's R² by ±0.1 on its own)."""
    out: np.ndarray = np.mean([host_columns_r2(features, host, k) for k in draws], axis=0)
    return out


def bank_regressors(job: JobTranscript) -> dict[str, np.ndarray]:
    """Every per-row quantity the bank decrypted, as regressor sets over the validation rows: the
    final model's Σ_F u_F (the baseline: what scoring those rows gives), and with it each epoch's
    decrypted loss vector (slot i mod S beside validation row i; every slot holds one scalar, so
    what is left is its deviation from the mean, standardised) alone and all together."""
    rows = job.bank.validation.size
    scores = job.bank.final_hosts[:, None]
    # one ciphertext of S slots: more validation rows than slots reuse slots in order
    spread = np.stack([np.resize(v, rows) for v in job.bank.decrypted]).T
    spread = spread - spread.mean(axis=0)
    spread = spread / np.where(spread.std(axis=0) > 0, spread.std(axis=0), 1.0)
    sets = {"final scores": scores, "final scores + every loss vector": np.hstack([scores, spread])}
    for e in range(spread.shape[1]):
        sets[f"final scores + loss vector {e}"] = np.hstack([scores, spread[:, e : e + 1]])
    return sets


# --- attack 3: the arbiter against its masks -----------------------------------------------------


def masks_of(job: JobTranscript, seen: Decryption) -> Masks:
    """The masks the party drew for the request the arbiter decrypted (from its transcript)."""
    if seen.party != job.feature_name:
        return job.bank.masks[(seen.step, seen.epoch, seen.batch)]
    if seen.step == "reveal":
        return job.feature.reveal_masks
    (found,) = [b.masks for b in job.feature.batches if (b.epoch, b.batch) ==
                (seen.epoch, seen.batch)]
    return found


@dataclass(frozen=True)
class Unmasked:
    """One decrypted chunk: what the arbiter saw (v = m + r + e, floats), the true value m + e
    (exact integers, then floats) and the mask's coefficient limit."""

    step: str
    seen: np.ndarray
    true: np.ndarray
    limit: int


def unmask(job: JobTranscript) -> list[Unmasked]:
    out = []
    for seen in job.arbiter:
        masks = masks_of(job, seen)
        for coeffs, mask, limit in zip(seen.coeffs, masks.coeffs, masks.limits, strict=True):
            true = (coeffs - mask).astype(np.float64)
            out.append(Unmasked(seen.step, coeffs.astype(np.float64), true, limit))
    return out


@dataclass(frozen=True)
class MaskStats:
    count: int  # decrypted chunks
    ks_coefficients: float  # p-value, coefficients / limit against U[-1, 1]
    ks_slots: float  # p-value, slots against the pure mask's (normal, std limit·sqrt(N/6))
    corr_coefficients: float  # of what A saw with the true coefficients
    corr_slots: float  # of what A saw with the true slot values
    bits_coefficient: float  # min over chunks of log2(limit / max |true coefficient|)
    bits_slot: float  # min over chunks of log2(limit / max |true slot value|), i.e. log2(B/|g|)
    bits_total: float  # -log2 Σ_chunks Σ_i |m_i| / (2 limit): the whole view's distance bound


def arbiter_mask_stats(chunks: Sequence[Unmasked]) -> MaskStats:
    """What the arbiter's exact decryptions say about the values under the masks."""
    n = chunks[0].seen.size
    coeffs = np.concatenate([c.seen / c.limit for c in chunks])
    seen_slots = [decode(c.seen) / (c.limit * np.sqrt(n / 6.0)) for c in chunks]
    true_slots = [decode(c.true) for c in chunks]
    ks_c = stats.kstest(coeffs, stats.uniform(loc=-1.0, scale=2.0).cdf).pvalue
    ks_s = stats.kstest(np.concatenate(seen_slots), stats.norm.cdf).pvalue
    corr_c = np.corrcoef(np.concatenate([c.seen for c in chunks]),
                         np.concatenate([c.true for c in chunks]))[0, 1]
    corr_s = np.corrcoef(np.concatenate(seen_slots), np.concatenate(true_slots))[0, 1]
    bits_c = min(np.log2(c.limit / np.abs(c.true).max()) for c in chunks)
    bits_s = min(np.log2(c.limit / np.abs(t).max()) for c, t in zip(chunks, true_slots,
                                                                     strict=True))
    distance = sum(float(np.abs(c.true).sum()) / (2.0 * c.limit) for c in chunks)
    return MaskStats(len(chunks), float(ks_c), float(ks_s), float(corr_c), float(corr_s),
                     float(bits_c), float(bits_s), -float(np.log2(distance)))


def weakened(chunks: Sequence[Unmasked], bits: int) -> list[Unmasked]:
    """The same values under masks 2^bits times their limit smaller (the tests' power check)."""
    out = []
    for c in chunks:
        small = c.limit >> bits
        mask = (c.seen - c.true) / float(1 << bits)
        out.append(Unmasked(c.step, c.true + mask, c.true, max(small, 1)))
    return out

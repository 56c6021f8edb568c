"""Label party L of vertical LR: plans batches, forms the encrypted residual, validates."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict

import numpy as np

from common.errors import ProtocolError
from crypto.he import CKKS_SUITE, HeBackend, HeSuite, pack_frames
from models.metrics import auc, ks, log_loss
from models.vlr import EpochReport, StepKey, VlrConfig, encode_plan, encode_positions
from models.vlr.layout import GradientParty
from models.vlr.preprocess import Standardizer, label_design


def split_positions(n_rows: int, config: VlrConfig) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/validation split of L's rows; fraction 0 validates on the training rows."""
    order = np.random.default_rng([config.seed, 1]).permutation(n_rows)
    n_validation = int(round(n_rows * config.validation_fraction))
    if config.validation_fraction > 0 and n_validation == 0:
        raise ValueError(f"{n_rows} rows leave no validation rows")
    train = np.sort(order[n_validation:])
    validation = np.sort(order[:n_validation]) if n_validation else train
    return train, validation


def fixed_batches(train: np.ndarray, config: VlrConfig) -> list[np.ndarray]:
    """Near-equal batches fixed for the whole job (so F can cache its encoded X), none tiny."""
    if train.size < config.min_batch:
        raise ValueError(f"{train.size} training rows: fewer than one batch of {config.min_batch}")
    count = max(1, min(-(-train.size // config.batch_size), train.size // config.min_batch))
    if -(-train.size // count) > config.params.slot_count:
        raise ValueError("batches would exceed the slot count; raise batch_size or min_batch")
    shuffled = np.random.default_rng([config.seed, 2]).permutation(train)
    return list(np.array_split(shuffled, count))


def epoch_order(n_batches: int, config: VlrConfig, epoch: int) -> np.ndarray:
    """The order batches run in during `epoch` (derived from seed and epoch: resumable)."""
    return np.random.default_rng([config.seed, 3, epoch]).permutation(n_batches)


class LabelParty(GradientParty):
    """The bank. Per batch: batch_positions → (F.forward) → residual → gradient → update."""

    def __init__(
        self,
        job: str,
        features: np.ndarray,
        labels: np.ndarray,
        feature_parties: Sequence[str],
        config: VlrConfig,
        *,
        suite: HeSuite = CKKS_SUITE,
    ) -> None:
        features = np.asarray(features, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.float64).reshape(-1)
        if features.ndim != 2 or features.shape[0] != labels.size:
            raise ValueError("features must be (rows, columns) with one label per row")
        if not np.all((labels == 0) | (labels == 1)):
            raise ValueError("labels must be 0 or 1")
        width = features.shape[1] + 1  # the intercept is L's, unpenalised
        super().__init__(job, width, config, penalized=np.arange(width) < width - 1)
        self._features, self.labels, self._suite = features, labels, suite
        self.feature_parties = tuple(sorted(feature_parties))
        self.train, self.validation = split_positions(labels.size, config)
        self._batches = fixed_batches(self.train, config)
        self._own_key: HeBackend | None = None
        self.scaler: Standardizer | None = None
        self._best_loss, self._best_epoch, self._wait = math.inf, -1, 0
        self.history: list[EpochReport] = []

    @property
    def n_batches(self) -> int:
        return len(self._batches)

    @property
    def stopped(self) -> bool:
        return bool(self.history) and self.history[-1].stop

    def open(self, arbiter_context: bytes) -> None:
        """Load A's public context; make L's own key pair for validation; build X_L."""
        arbiter = self._suite.load_public(arbiter_context)
        self._own_key = self._suite.make_private(self.config.params, False)
        design, self.scaler = label_design(self._features, self.train)
        self._attach(arbiter, design)

    def validation_context(self) -> bytes:
        """L's public context (no secret key, no Galois keys) for F's validation logits."""
        if self._own_key is None:
            raise ProtocolError("label party not opened yet")
        return self._own_key.public_bytes()

    def plan(self) -> bytes:
        return encode_plan(self.train, self.validation)

    def batch_positions(self, key: StepKey) -> bytes:
        """Positions of batch `key.batch` of `key.epoch` (bytes for every F)."""
        self._check_key(key, "positions")
        cached = self._steps.lookup(key, b"")
        if cached is not None:
            return cached
        if not 0 <= key.batch < self.n_batches:
            raise ProtocolError(f"batch {key.batch} out of range ({self.n_batches} per epoch)")
        rows = self._batches[int(epoch_order(self.n_batches, self.config, key.epoch)[key.batch])]
        self._begin_batch(key, rows)
        return self._steps.store(key, b"", encode_positions(rows))

    def residual(self, key: StepKey, forwards: Mapping[str, bytes]) -> bytes:
        """[d] = Σ[u_F/4] + u_L/4 + 1/2 - y under A's key (bytes for every F and for L itself)."""
        self._check_key(key, "residual")
        names = sorted(forwards)
        request = pack_frames([n.encode() for n in names] + [forwards[n] for n in names])
        cached = self._steps.lookup(key, request)
        if cached is not None:
            return cached
        if tuple(names) != self.feature_parties:
            raise ProtocolError(f"residual needs forwards from {self.feature_parties}, got {names}")
        arbiter, design, _ = self._opened()
        rows = self._pending_for(key).positions
        plain = 0.25 * (design[rows] @ self.weights) + 0.5 - self.labels[rows]
        parts = [forwards[n] for n in names]
        blob = arbiter.add(parts, plain) if parts else arbiter.encrypt(plain)
        return self._steps.store(key, request, blob)

    def end_epoch(self, epoch: int, validation_parts: Mapping[str, bytes]) -> EpochReport:
        """Validation loss/AUC/KS from Σ[u_F] (decrypted under L's key) + u_L; early stopping."""
        if epoch < self._next_epoch:
            return self.history[epoch]
        if self._applied != self.n_batches or self._last_update[0] != epoch:
            raise ProtocolError(f"epoch {epoch} ended before all {self.n_batches} batches ran")
        if tuple(sorted(validation_parts)) != self.feature_parties or self._own_key is None:
            raise ProtocolError(f"validation needs parts from {self.feature_parties}")
        _, design, _ = self._opened()
        logits = design[self.validation] @ self.weights
        if validation_parts:
            summed = self._own_key.add([validation_parts[n] for n in self.feature_parties])
            hosts = self._own_key.decrypt(summed)
            if hosts.size != logits.size:
                raise ProtocolError(f"validation parts hold {hosts.size} rows, not {logits.size}")
            logits = logits + hosts
        y = self.labels[self.validation]
        loss = log_loss(y, logits)
        improved = loss < self._best_loss - self.config.tol
        if improved:
            self._best_loss, self._best_epoch, self._wait = loss, epoch, 0
        else:
            self._wait += 1
        stop = self._wait >= self.config.patience or epoch + 1 >= self.config.max_epochs
        report = EpochReport(
            epoch, loss, auc(y, logits), ks(y, logits), improved, stop, self._best_epoch
        )
        self._close_epoch(epoch, improved)
        self.history.append(report)
        return report

    def state_dict(self) -> dict[str, object]:
        state = self._base_state()
        state.update(
            role="label",
            best_loss=self._best_loss,
            best_epoch=self._best_epoch,
            wait=self._wait,
            history=[asdict(r) for r in self.history],
        )
        return state

    def load_state_dict(self, state: dict[str, object]) -> None:
        if state.get("role") != "label":
            raise ValueError("checkpoint is not a label party's")
        self._load_base_state(state)
        self._best_loss = float(state["best_loss"])  # type: ignore[arg-type]
        self._best_epoch = int(state["best_epoch"])  # type: ignore[call-overload]
        self._wait = int(state["wait"])  # type: ignore[call-overload]
        self.history = [EpochReport(**r) for r in state["history"]]  # type: ignore[attr-defined]

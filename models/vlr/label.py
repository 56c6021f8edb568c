"""Label party L of label-private vertical LR: plans batches, forms the encrypted residual, and
learns one loss scalar per epoch and the final model's metrics, nothing per row."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from fractions import Fraction
from typing import Any

import numpy as np

from common.errors import ProtocolError
from crypto.he import pack_frames
from crypto.he.interface import LrHe, LrSuite
from crypto.he.lr_arbiter import CKKS_LR_SUITE
from models.labels import labelled_table
from models.metrics import auc, ks, log_loss, taylor_loss
from models.vlr import EpochReport, StepKey, VlrConfig, encode_plan, encode_positions
from models.vlr.layout import U_MAX, VALIDATION_SCALE, GradientParty
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
    """The bank. Per batch: batch_positions → (F.forward) → residual → gradient → update.

    Per epoch: loss_request → (A refreshes [u + r]) → loss_sum → (A re-encrypts the masked
    Taylor loss under L's own key) → end_epoch. After the last epoch: metrics.
    """

    def __init__(
        self,
        job: str,
        features: np.ndarray,
        labels: np.ndarray,
        feature_parties: Sequence[str],
        config: VlrConfig,
        *,
        suite: LrSuite = CKKS_LR_SUITE,
    ) -> None:
        features, labels = labelled_table(features, labels, both_classes=False)
        width = features.shape[1] + 1  # the intercept is L's, unpenalised
        super().__init__(job, width, config, np.arange(width) < width - 1, suite)
        self._features, self.labels = features, labels
        self.feature_parties = tuple(sorted(feature_parties))
        self.train, self.validation = split_positions(labels.size, config)
        self._batches = fixed_batches(self.train, config)
        self._own: LrHe | None = None
        self.scaler: Standardizer | None = None
        self._best_loss, self._best_epoch, self._wait = math.inf, -1, 0
        self._epoch_masks: dict[str, Any] = {}
        self.history: list[EpochReport] = []
        self.final: EpochReport | None = None

    @property
    def n_batches(self) -> int:
        return len(self._batches)

    @property
    def best_epoch(self) -> int:
        return self._best_epoch

    @property
    def stopped(self) -> bool:
        return bool(self.history) and self.history[-1].stop

    def open(self, arbiter_context: bytes) -> None:
        """Load A's public context; make L's own key pair on the same ring; build X_L."""
        design, self.scaler = label_design(self._features, self.train)
        self._own = self._suite.own_key(self.config.params)
        self._attach(arbiter_context, design)

    def _own_key(self) -> LrHe:
        if self._own is None:
            raise ProtocolError("label party not opened yet")
        return self._own

    def validation_context(self) -> bytes:
        """L's own public context (no secret key, no rotation keys)."""
        return self._own_key().public_bytes()

    def check_widths(self, widths: Mapping[str, int]) -> None:
        """Refuse feature nodes whose weights are too many for the training rows: a node's final
        weights are linear in the labels, and with nearly as many weights as rows it could solve
        for them (measured: 300 weights on 480 rows give every label)."""
        if tuple(sorted(widths)) != self.feature_parties:
            raise ProtocolError(f"widths of {sorted(widths)}, expected {self.feature_parties}")
        floor = self.config.min_rows_per_column
        for party, width in sorted(widths.items()):
            if self.train.size < floor * width:
                raise ProtocolError(
                    f"feature node {party} has {width} weights: {self.train.size} training rows "
                    f"are fewer than {floor} per weight ([vlr] min_rows_per_column = {floor}); "
                    "add rows or drop columns at that node")

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
        """[d] = Σ[u_F/4] + [u_L/4] + 1/2 - y under A's key (for every F and for L itself)."""
        self._check_key(key, "residual")
        names = sorted(forwards)
        request = pack_frames([n.encode() for n in names] + [forwards[n] for n in names])
        cached = self._steps.lookup(key, request)
        if cached is not None:
            return cached
        if tuple(names) != self.feature_parties:
            raise ProtocolError(f"residual needs forwards from {self.feature_parties}, got {names}")
        he, _ = self._opened()
        rows = self._pending_for(key).positions
        own = self._quarter_logits(rows)
        parts = [forwards[n] for n in names]
        if any(he.scales(p) != he.scales(own) for p in parts):
            raise ProtocolError("a forward part is not one ciphertext at the residual's scale")
        blob = he.add([*parts, own], 0.5 - self.labels[rows])
        return self._steps.store(key, request, blob)

    def loss_request(self, epoch: int, validation_parts: Mapping[str, bytes]) -> bytes:
        """[u + r] on the validation rows (u = Σ u_F + u_L), masked for the arbiter's refresh."""
        if tuple(sorted(validation_parts)) != self.feature_parties:
            raise ProtocolError(f"validation needs parts from {self.feature_parties}")
        if self._applied != self.n_batches or self._last_update[0] != epoch:
            raise ProtocolError(f"epoch {epoch} ended before all {self.n_batches} batches ran")
        he, _ = self._opened()
        own = self._logits(self.validation)
        summed = he.add([*(validation_parts[n] for n in self.feature_parties), own])
        masked, masks = he.mask(summed, 2.0**self.config.mask_bits * U_MAX)
        self._epoch_masks = {"logits": masks, "scale": he.scales(masked)[0]}
        return masked

    def loss_sum(self, refreshed: bytes) -> bytes:
        """Unmask the refreshed logits, form [Σ u² - 4 z u] (z = 2y - 1), mask it, and name L's
        own key for the arbiter to re-encrypt it under."""
        he, _ = self._opened()
        if "logits" not in self._epoch_masks or he.scales(refreshed)[0] != VALIDATION_SCALE:
            raise ProtocolError("loss_sum without a refreshed validation request")
        ratio = Fraction(VALIDATION_SCALE) / Fraction(self._epoch_masks["scale"])
        u = he.unmask(refreshed, self._epoch_masks.pop("logits"), ratio)
        z = 2.0 * self.labels[self.validation] - 1.0
        total = he.square_sum(u, -4.0 * z)
        bound = 2.0**self.config.mask_bits * self.validation.size * (U_MAX**2 + 4 * U_MAX)
        masked, self._epoch_masks["loss"] = he.mask(total, bound)
        return pack_frames([masked, self.validation_context()])

    def end_epoch(self, epoch: int, loss_part: bytes) -> EpochReport:
        """The epoch's validation loss (second-order Taylor, one scalar), early stopping."""
        if epoch < self._next_epoch:
            return self.history[epoch]
        if "loss" not in self._epoch_masks:
            raise ProtocolError(f"end of epoch {epoch} without a masked loss")
        own = self._own_key()
        value = float(own.decrypt(own.unmask(loss_part, self._epoch_masks.pop("loss")))[0])
        loss = taylor_loss(value, self.validation.size)
        improved = loss < self._best_loss - self.config.tol
        if improved:
            self._best_loss, self._best_epoch, self._wait = loss, epoch, 0
        else:
            self._wait += 1
        stop = self._wait >= self.config.patience or epoch + 1 >= self.config.max_epochs
        report = EpochReport(epoch, loss, None, None, improved, stop, self._best_epoch)
        self._close_epoch(epoch)
        self.history.append(report)
        return report

    def metrics(self, final_parts: Mapping[str, bytes]) -> EpochReport:
        """AUC, KS and log loss of the final model on the validation rows, computed once."""
        if tuple(sorted(final_parts)) != self.feature_parties or not self.history:
            raise ProtocolError(f"final metrics need parts from {self.feature_parties}")
        _, design = self._opened()
        logits = design[self.validation] @ self.weights
        if final_parts:
            own = self._own_key()
            hosts = own.decrypt(own.add([final_parts[n] for n in self.feature_parties]))
            logits = logits + hosts[: logits.size]
        y = self.labels[self.validation]
        last = self.history[-1]
        self.final = EpochReport(last.epoch, log_loss(y, logits), auc(y, logits), ks(y, logits),
                                 last.improved, True, self._best_epoch)
        return self.final

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

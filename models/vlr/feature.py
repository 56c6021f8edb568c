"""Feature party F of vertical LR: partial logits out, masked gradient to A, its own weights."""

from __future__ import annotations

import numpy as np

from common.errors import ProtocolError
from crypto.he import CKKS_SUITE, HeBackend, HeSuite
from models.vlr import FeatureAlignment, StepKey, VlrConfig, decode_plan, decode_positions
from models.vlr.layout import GradientParty
from models.vlr.preprocess import Standardizer, feature_design, has_indicator, train_mask


class FeatureParty(GradientParty):
    """One feature holder. Step order per batch: forward → gradient → update.

    `config.min_batch` is F's own floor: the node should take it from its own configuration, not
    from the job request, since small batches are what would let L infer F's values.
    """

    def __init__(
        self,
        name: str,
        job: str,
        table: np.ndarray,
        alignment: FeatureAlignment,
        config: VlrConfig,
        *,
        suite: HeSuite = CKKS_SUITE,
    ) -> None:
        table = np.asarray(table, dtype=np.float64)
        alignment.validate(table.shape[0])
        width = table.shape[1] + int(has_indicator(alignment))
        super().__init__(job, width, config, penalized=np.ones(width, dtype=bool))
        self.name = name
        self._table, self._alignment, self._suite = table, alignment, suite
        self._validator: HeBackend | None = None
        self._train = np.zeros(alignment.n_rows, dtype=bool)
        self._validation = np.zeros(0, dtype=np.int64)
        self.scaler: Standardizer | None = None

    @property
    def n_rows(self) -> int:
        return self._alignment.n_rows

    def open(self, arbiter_context: bytes, validation_context: bytes, plan: bytes) -> None:
        """Load A's public context (training) and L's (validation); build X on the plan's rows."""
        arbiter = self._suite.load_public(arbiter_context)
        self._validator = self._suite.load_public(validation_context)
        train, self._validation = decode_plan(plan, self.n_rows)
        if train.size < self.config.min_batch:
            raise ProtocolError(f"{train.size} training rows: fewer than one minimum batch")
        self._train = train_mask(self.n_rows, train)
        design, self.scaler = feature_design(self._table, self._alignment, train)
        self._attach(arbiter, design)

    def forward(self, key: StepKey, positions: bytes) -> bytes:
        """[u_F / 4] for the batch rows, encrypted under A's key (bytes for L)."""
        self._check_key(key, "forward")
        cached = self._steps.lookup(key, positions)
        if cached is not None:
            return cached
        arbiter, design, _ = self._opened()
        rows = decode_positions(positions, self.n_rows)
        if not np.all(self._train[rows]):
            raise ProtocolError("batch asks for rows outside the training plan")
        self._begin_batch(key, rows)
        quarter_logits = 0.25 * (design[rows] @ self.weights)
        return self._steps.store(key, positions, arbiter.encrypt(quarter_logits))

    def validation_logits(self, key: StepKey) -> bytes:
        """[u_F] on L's validation rows, under L's own key (many rows per ciphertext)."""
        self._check_key(key, "validate")
        cached = self._steps.lookup(key, b"")
        if cached is not None:
            return cached
        _, design, _ = self._opened()
        if self._validator is None or self._pending is not None or key.epoch != self._next_epoch:
            raise ProtocolError(f"validation of epoch {key.epoch} out of order")
        logits = design[self._validation] @ self.weights
        return self._steps.store(key, b"", self._validator.encrypt(logits))

    def end_epoch(self, epoch: int, improved: bool) -> None:
        """L's verdict on the epoch: keep these weights as the best if validation improved."""
        self._close_epoch(epoch, improved)

    def state_dict(self) -> dict[str, object]:
        state = self._base_state()
        state.update(role="feature", name=self.name)
        if self.scaler is not None:
            state.update(mean=self.scaler.mean.copy(), scale=self.scaler.scale.copy())
        return state

    def load_state_dict(self, state: dict[str, object]) -> None:
        if state.get("role") != "feature" or state.get("name") != self.name:
            raise ValueError("checkpoint is not this feature party's")
        self._load_base_state(state)

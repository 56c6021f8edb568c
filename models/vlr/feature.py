"""Feature party F of label-private vertical LR: encrypted logits out, its own weights stepping
unseen, its final weights revealed to it alone."""

from __future__ import annotations

import numpy as np

from common.errors import ProtocolError
from crypto.he.interface import LrHe, LrSuite
from crypto.he.lr_arbiter import CKKS_LR_SUITE
from models.vlr import FeatureAlignment, StepKey, VlrConfig, decode_plan, decode_positions
from models.vlr.layout import GradientParty
from models.vlr.preprocess import Standardizer, feature_design, has_indicator, train_mask


class FeatureParty(GradientParty):
    """One feature holder. Per batch: forward → gradient → update; per epoch: validate.

    `config.min_batch` is F's own floor: the node takes it from its own configuration, not from
    the job request.
    """

    def __init__(
        self,
        name: str,
        job: str,
        table: np.ndarray,
        alignment: FeatureAlignment,
        config: VlrConfig,
        *,
        suite: LrSuite = CKKS_LR_SUITE,
    ) -> None:
        table = np.asarray(table, dtype=np.float64)
        alignment.validate(table.shape[0])
        width = table.shape[1] + int(has_indicator(alignment))
        super().__init__(job, width, config, np.ones(width, dtype=bool), suite)
        self.name = name
        self._table, self._alignment = table, alignment
        self._validator: LrHe | None = None
        self._train = np.zeros(alignment.n_rows, dtype=bool)
        self._validation = np.zeros(0, dtype=np.int64)
        self.scaler: Standardizer | None = None

    @property
    def n_rows(self) -> int:
        return self._alignment.n_rows

    def open(self, arbiter_context: bytes, validation_context: bytes, plan: bytes) -> None:
        """Load A's public context (training) and L's own (final validation logits)."""
        self._validator = self._suite.load_public(validation_context)
        train, self._validation = decode_plan(plan, self.n_rows)
        if train.size < self.config.min_batch:
            raise ProtocolError(f"{train.size} training rows: fewer than one minimum batch")
        self._train = train_mask(self.n_rows, train)
        design, self.scaler = feature_design(self._table, self._alignment, train)
        self._attach(arbiter_context, design)

    def forward(self, key: StepKey, positions: bytes) -> bytes:
        """[u_F / 4] for the batch rows, under A's key (for L)."""
        self._check_key(key, "forward")
        cached = self._steps.lookup(key, positions)
        if cached is not None:
            return cached
        rows = decode_positions(positions, self.n_rows)
        if not np.all(self._train[rows]):
            raise ProtocolError("batch asks for rows outside the training plan")
        self._begin_batch(key, rows)
        return self._steps.store(key, positions, self._quarter_logits(rows))

    def validation_logits(self, key: StepKey) -> bytes:
        """[u_F] on L's validation rows under A's key: L only ever sees one masked loss."""
        self._check_key(key, "validate")
        cached = self._steps.lookup(key, b"")
        if cached is not None:
            return cached
        if self._pending is not None or key.epoch != self._next_epoch:
            raise ProtocolError(f"validation of epoch {key.epoch} out of order")
        return self._steps.store(key, b"", self._logits(self._validation))

    def final_logits(self) -> bytes:
        """The final model's u_F on the validation rows, under L's own key (for AUC and KS:
        what scoring those rows would tell L)."""
        _, design = self._opened()
        if self._validator is None:
            raise ProtocolError("feature party not opened")
        return self._validator.encrypt(design[self._validation] @ self.weights,
                                       self.config.params.scale)

    def end_epoch(self, epoch: int) -> None:
        """The epoch is over (whether it improved is L's to know, told only at the end)."""
        self._close_epoch(epoch)

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

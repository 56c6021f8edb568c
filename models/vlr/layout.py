"""Packed rotation layout for X^T[d], and the masked-gradient steps L and F share on top of it.

A batch of b <= S rows sits in one ciphertext [d] (row i in slot i). With F = `fold` rotated copies
of [d] (step R = S/F), copy k holds row (s + kR) mod S in slot s. Group g's plaintext k puts
X[(s + kR) mod S, g*F + s//R] in slot s, so slot block f of the sum over k covers every row once
for feature g*F + f. One rescale and log2(R) rotate-and-add steps then leave feature g*F + f's
gradient in slot f*R of ciphertext g. All other slots hold partial sums over subsets of rows:
every slot is masked before a ciphertext leaves the party.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from common.errors import ProtocolError
from crypto.he import HeBackend, Prepared, pack_frames
from crypto.masks import uniform_mask
from models.vlr import StepCache, StepKey, VlrConfig, decode_values, digest, encode_positions

# Measured single-thread costs (ms, N=8192; notes/HE-COSTS.md) steering the choice of fold.
_ROTATE_FRESH_MS = 2.4
_ROTATE_RESCALED_MS = 1.35
_MULTIPLY_ADD_MS = 0.22
_PER_OUTPUT_MS = 6.0  # rescale, mask, serialise, relay (~235 KB) and decrypt one result


@dataclass(frozen=True)
class PackedLayout:
    """Where X's values go in the plaintexts, and where each feature's gradient lands."""

    n_features: int
    slots: int
    fold: int

    def __post_init__(self) -> None:
        if (
            self.n_features < 1
            or self.fold < 1
            or self.slots % self.fold
            or self.fold & (self.fold - 1)
        ):
            raise ValueError(
                f"bad layout: {self.n_features} features, fold {self.fold}, {self.slots} slots"
            )

    @property
    def width(self) -> int:
        return self.slots // self.fold

    @property
    def groups(self) -> int:
        return -(-self.n_features // self.fold)

    @classmethod
    def choose(cls, n_features: int, slots: int) -> PackedLayout:
        """The power-of-two fold with the least estimated kernel time."""

        def cost(fold: int) -> float:
            groups = -(-n_features // fold)
            per_group = math.log2(slots // fold) * _ROTATE_RESCALED_MS + _PER_OUTPUT_MS
            return (fold - 1) * _ROTATE_FRESH_MS + groups * (fold * _MULTIPLY_ADD_MS + per_group)

        folds = [2**i for i in range(int(math.log2(slots)) + 1)]
        return cls(n_features, slots, min(folds, key=lambda f: (cost(f), f)))

    def plaintexts(self, x: np.ndarray) -> np.ndarray:
        """(groups, fold, slots) operands for a batch x of shape (b <= slots, n_features)."""
        b, p = x.shape
        if b > self.slots or p != self.n_features:
            raise ValueError(
                f"batch {x.shape} does not fit layout ({self.slots}, {self.n_features})"
            )
        padded = np.zeros((self.slots, self.groups * self.fold))
        padded[:b, :p] = x
        slot = np.arange(self.slots)
        rows = (slot[None, :] + self.width * np.arange(self.fold)[:, None]) % self.slots
        cols = (
            self.fold * np.arange(self.groups)[:, None, None] + (slot // self.width)[None, None, :]
        )
        out: np.ndarray = padded[rows[None, :, :], cols]
        return out

    def output_slots(self) -> np.ndarray:
        """Index of feature j's gradient in the flattened (groups * slots) result."""
        j = np.arange(self.n_features)
        out: np.ndarray = (j // self.fold) * self.slots + (j % self.fold) * self.width
        return out


class PlaintextCache:
    """Encoded X operands per batch, least recently used evicted beyond a byte budget."""

    def __init__(self, budget: int) -> None:
        self._budget, self._used = budget, 0
        self._items: OrderedDict[bytes, Prepared] = OrderedDict()

    def get(self, key: bytes) -> Prepared | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: bytes, item: Prepared) -> None:
        if item.nbytes > self._budget or key in self._items:
            return
        self._items[key] = item
        self._used += item.nbytes
        while self._used > self._budget:
            _, old = self._items.popitem(last=False)
            self._used -= old.nbytes

    def clear(self) -> None:
        self._items.clear()
        self._used = 0


@dataclass
class _Pending:
    batch: tuple[int, int]
    positions: np.ndarray
    masks: np.ndarray | None = None


class GradientParty:
    """What L and F share: own weights, the masked packed gradient, the idempotent update."""

    def __init__(self, job: str, n_features: int, config: VlrConfig, penalized: np.ndarray) -> None:
        self.job, self.config = job, config
        self.weights = np.zeros(n_features)
        self._best = self.weights.copy()
        self._penalized = np.asarray(penalized, dtype=bool)
        self._next_epoch = 0
        self._last_update = (-1, -1)
        self._applied = 0  # updates applied in the current epoch
        self._pending: _Pending | None = None
        self._steps = StepCache()
        self._cache = PlaintextCache(config.cache_bytes)
        self._arbiter: HeBackend | None = None
        self._design: np.ndarray | None = None
        self._layout: PackedLayout | None = None

    @property
    def n_features(self) -> int:
        return int(self.weights.size)

    @property
    def next_epoch(self) -> int:
        return self._next_epoch

    def _attach(self, arbiter: HeBackend, design: np.ndarray) -> None:
        self._arbiter, self._design = arbiter, design
        self._layout = PackedLayout.choose(self.n_features, arbiter.slot_count)
        self._cache.clear()
        self._steps.clear()
        self._pending = None

    def _opened(self) -> tuple[HeBackend, np.ndarray, PackedLayout]:
        if self._arbiter is None or self._design is None or self._layout is None:
            raise ProtocolError("party not opened for this job yet")
        return self._arbiter, self._design, self._layout

    def _check_key(self, key: StepKey, step: str) -> None:
        if key.job != self.job or key.step != step:
            raise ProtocolError(f"step {key} sent to {step} of job {self.job}")

    def _begin_batch(self, key: StepKey, positions: np.ndarray) -> None:
        """Open batch (epoch, batch) after checking order and size; one batch at a time."""
        arbiter, _, _ = self._opened()
        batch = (key.epoch, key.batch)
        if key.epoch != self._next_epoch or batch <= self._last_update:
            raise ProtocolError(
                f"batch {batch} out of order (epoch {self._next_epoch}, last {self._last_update})"
            )
        if self._pending is not None and self._pending.batch != batch:
            raise ProtocolError(f"batch {self._pending.batch} still awaits its update")
        size = int(positions.size)
        if size < self.config.min_batch:
            raise ProtocolError(
                f"batch of {size} rows refused: the minimum is {self.config.min_batch}"
            )
        if size > arbiter.slot_count:
            raise ProtocolError(f"batch of {size} rows exceeds {arbiter.slot_count} slots")
        self._pending = _Pending(batch, positions)

    def _pending_for(self, key: StepKey) -> _Pending:
        if self._pending is None or self._pending.batch != (key.epoch, key.batch):
            raise ProtocolError(f"no open batch {(key.epoch, key.batch)}")
        return self._pending

    def gradient(self, key: StepKey, residual: bytes) -> bytes:
        """Masked [X^T d] for the open batch: the request this party sends to the arbiter.

        The sum, not the mean, travels: CKKS noise (~3e-8 of the values, measured) then sits far
        below the arbiter's 1e-3 rounding, which costs the batch mean only ~1e-3 / b.
        """
        self._check_key(key, "gradient")
        cached = self._steps.lookup(key, residual)
        if cached is not None:
            return cached
        arbiter, design, layout = self._opened()
        pending = self._pending_for(key)
        if pending.masks is not None:
            raise ProtocolError(f"gradient of batch {pending.batch} already computed")
        batch_id = digest(encode_positions(pending.positions))
        prepared = self._cache.get(batch_id)
        if prepared is None:
            prepared = arbiter.prepare(layout.plaintexts(design[pending.positions]))
            self._cache.put(batch_id, prepared)
        masks = uniform_mask((layout.groups, layout.slots), self.config.mask_bound)
        blob = arbiter.masked_packed_products(residual, prepared, masks)
        pending.masks = masks
        request = pack_frames([blob, encode_positions(layout.output_slots())])
        return self._steps.store(key, residual, request)

    def update(self, key: StepKey, decrypted: bytes) -> None:
        """Unmask the arbiter's answer, add L2 and step; a repeated (epoch, batch) is a no-op."""
        self._check_key(key, "update")
        if (
            self._steps.lookup(key, decrypted) is not None
            or (key.epoch, key.batch) <= self._last_update
        ):
            return
        _, _, layout = self._opened()
        pending = self._pending_for(key)
        if pending.masks is None:
            raise ProtocolError(f"batch {pending.batch} has no gradient to update from")
        values = decode_values(decrypted, self.n_features)
        total = values - pending.masks.reshape(-1)[layout.output_slots()]  # X^T d over the batch
        grad = total / pending.positions.size
        grad += self.config.l2 * np.where(self._penalized, self.weights, 0.0)
        self.weights = self.weights - self.config.learning_rate_at(key.epoch) * grad
        self._last_update, self._pending = pending.batch, None
        self._applied += 1
        self._steps.store(key, decrypted, b"")

    def _close_epoch(self, epoch: int, improved: bool) -> bool:
        """Record the end of `epoch`; False if it was already recorded (a retry)."""
        if epoch < self._next_epoch:
            return False
        if epoch != self._next_epoch or self._pending is not None:
            raise ProtocolError(
                f"cannot end epoch {epoch}: at epoch {self._next_epoch}, batch open"
            )
        if improved:
            self._best = self.weights.copy()
        self._next_epoch, self._applied = epoch + 1, 0
        return True

    def finish(self) -> None:
        """Keep the weights of the best validation epoch."""
        self.weights = self._best.copy()

    def _base_state(self) -> dict[str, object]:
        return {
            "job": self.job,
            "weights": self.weights.copy(),
            "best_weights": self._best.copy(),
            "next_epoch": self._next_epoch,
            "last_update": self._last_update,
            "applied_in_epoch": self._applied,
        }

    def _load_base_state(self, state: dict[str, object]) -> None:
        weights = np.asarray(state["weights"], dtype=np.float64)
        if state["job"] != self.job or weights.shape != self.weights.shape:
            raise ValueError("checkpoint belongs to another job or model shape")
        self.weights = weights.copy()
        self._best = np.asarray(state["best_weights"], dtype=np.float64).copy()
        self._next_epoch = int(state["next_epoch"])  # type: ignore[call-overload]
        last = state["last_update"]
        if not isinstance(last, tuple | list) or len(last) != 2:
            raise ValueError("checkpoint has no (epoch, batch) of the last update")
        self._last_update = (int(last[0]), int(last[1]))
        self._applied = int(state.get("applied_in_epoch", 0))  # type: ignore[call-overload]
        self._pending = None
        self._steps.clear()

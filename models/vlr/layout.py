"""What L and F share in label-private vertical LR: encrypted weights that step without being seen.

A party's weights [w] are one ciphertext under the arbiter's key (replicated with period P, see
`crypto.he.lr`). Per batch the party computes [u/4] = X[w] (relabelled by 4), and from the residual
[d] its gradient [X^T d] in the weights' own layout. It masks every slot with fresh integer masks
2^mask_bits times larger than any gradient value can be (the bound is fixed per party from its own
design, rounded up to a power of two), relabels the ciphertext by b/eta (it now stands for the
weight step), and the arbiter brings it back to the weights' scale (`refresh`). The party removes
its mask from the fresh ciphertext and subtracts: [w] <- [w] - eta/b (X^T d + l2 b w). Nobody sees
a gradient, a weight or a step in the clear; the arbiter sees only masked values.

At the end each party masks its best [w] and the arbiter re-encrypts it under the party's own key
(`reencrypt`): only the party learns its final weights.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from common.errors import ProtocolError
from crypto.he import Prepared, pack_frames, unpack_frames
from crypto.he.interface import LrHe, LrSuite
from crypto.he.lr import period_for, replicate
from models.vlr import StepCache, StepKey, VlrConfig, digest, encode_positions

X_SCALE = 2.0**22  # encoded diagonals of X (absolute precision ~1e-6 on standardised values)
VALIDATION_SCALE = 2.0**30  # validation logits after the arbiter's refresh (room to square)
D_MAX = 16.0  # |d| = |u/4 + 1/2 - y| bound the gradient masks are sized for (|u| <= 60)
U_MAX = 2.0**10  # |u| bound of validation logits the masks are sized for
W_MAX = 2.0**10  # |w| bound of final weights the masks are sized for


def power_of_two_above(value: float) -> float:
    return 2.0 ** math.ceil(math.log2(max(value, 1.0)))


class PreparedCache:
    """Encoded diagonals by batch: kept until the budget is full, never evicted (batches come
    round once per epoch in a new order, so a recency rule would miss every time)."""

    def __init__(self, budget: int) -> None:
        self._budget, self._used = budget, 0
        self._items: OrderedDict[bytes, Prepared] = OrderedDict()

    def get(self, key: bytes) -> Prepared | None:
        return self._items.get(key)

    def put(self, key: bytes, item: Prepared) -> None:
        if key not in self._items and self._used + item.nbytes <= self._budget:
            self._items[key] = item
            self._used += item.nbytes

    def clear(self) -> None:
        self._items.clear()
        self._used = 0


@dataclass
class _Pending:
    batch: tuple[int, int]
    positions: np.ndarray
    masks: Any = None
    sent_scale: float = 0.0


class GradientParty:
    """Own encrypted weights, the masked gradient step, the idempotent update, the reveal."""

    def __init__(self, job: str, n_features: int, config: VlrConfig, penalized: np.ndarray,
                 suite: LrSuite) -> None:
        self.job, self.config, self._suite = job, config, suite
        self.period = period_for(n_features)
        self.weights = np.zeros(n_features)  # plaintext: only after `finish`
        self._enc: bytes | None = None  # [w] under the arbiter's key
        self._snapshots: dict[int, bytes] = {}  # [w] at the end of each epoch
        self._penalized = np.asarray(penalized, dtype=bool)
        self._next_epoch = 0
        self._last_update = (-1, -1)
        self._applied = 0  # updates applied in the current epoch
        self._pending: _Pending | None = None
        self._steps = StepCache()
        self._cache = PreparedCache(config.cache_bytes)
        self._he: LrHe | None = None
        self._arbiter_id = b""
        self._design: np.ndarray | None = None
        self._x_bound = 1.0
        self._reveal: tuple[Any, LrHe, bytes] | None = None

    @property
    def n_features(self) -> int:
        return int(self.weights.size)

    @property
    def next_epoch(self) -> int:
        return self._next_epoch

    @property
    def w_scale(self) -> float:
        return self.config.params.scale

    def _attach(self, arbiter_context: bytes, design: np.ndarray) -> None:
        he = self._suite.load_public(arbiter_context)
        if he.params != self.config.params:
            raise ProtocolError(f"the arbiter's ring {he.params} is not the job's "
                                f"{self.config.params}")
        arbiter_id = he.key_id()
        if self._enc is not None and arbiter_id != self._arbiter_id:
            raise ProtocolError("this party's checkpointed weights are encrypted under another "
                                "arbiter key: a resumed job needs the arbiter key it started "
                                "with (the coordinator keeps it until the job ends)")
        self._he, self._design, self._arbiter_id = he, design, arbiter_id
        self._x_bound = power_of_two_above(float(np.abs(design).max(initial=1.0)))
        if self._enc is None:
            self._enc = self._encrypt_weights(np.zeros(self.n_features))
        self._cache.clear()
        self._steps.clear()
        self._pending = None

    def _encrypt_weights(self, w: np.ndarray) -> bytes:
        he, _ = self._opened()
        return he.encrypt(replicate(w, self.period, he.slot_count), self.w_scale)

    def _opened(self) -> tuple[LrHe, np.ndarray]:
        if self._he is None or self._design is None:
            raise ProtocolError("party not opened for this job yet")
        return self._he, self._design

    def _check_key(self, key: StepKey, step: str) -> None:
        if key.job != self.job or key.step != step:
            raise ProtocolError(f"step {key} sent to {step} of job {self.job}")

    def _prepared(self, rows: np.ndarray) -> Prepared:
        he, design = self._opened()
        batch_id = digest(encode_positions(rows))
        prepared = self._cache.get(batch_id)
        if prepared is None:
            prepared = he.prepare(design[rows], self.period, X_SCALE)
            self._cache.put(batch_id, prepared)
        return prepared

    def _quarter_logits(self, rows: np.ndarray) -> bytes:
        """[u/4] on `rows` (one ciphertext) under the arbiter's key."""
        he, _ = self._opened()
        assert self._enc is not None
        return he.relabel(he.forward(self._enc, self._prepared(rows)), 4.0)

    def _logits(self, rows: np.ndarray) -> bytes:
        """[u] on any number of rows (chunks of at most S rows) under the arbiter's key."""
        he, _ = self._opened()
        assert self._enc is not None
        s = he.slot_count
        return he.concat([he.forward(self._enc, self._prepared(rows[i : i + s]))
                          for i in range(0, rows.size, s)])

    def _begin_batch(self, key: StepKey, positions: np.ndarray) -> None:
        """Open batch (epoch, batch) after checking order and size; one batch at a time."""
        he, _ = self._opened()
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
        if size > he.slot_count:
            raise ProtocolError(f"batch of {size} rows exceeds {he.slot_count} slots")
        self._pending = _Pending(batch, positions)

    def _pending_for(self, key: StepKey) -> _Pending:
        if self._pending is None or self._pending.batch != (key.epoch, key.batch):
            raise ProtocolError(f"no open batch {(key.epoch, key.batch)}")
        return self._pending

    def gradient(self, key: StepKey, residual: bytes) -> bytes:
        """The masked weight step of the open batch: what this party sends the arbiter."""
        self._check_key(key, "gradient")
        cached = self._steps.lookup(key, residual)
        if cached is not None:
            return cached
        he, _ = self._opened()
        pending = self._pending_for(key)
        if pending.masks is not None:
            raise ProtocolError(f"gradient of batch {pending.batch} already computed")
        b = pending.positions.size
        grad = he.gradient(residual, self._prepared(pending.positions))
        if self.config.l2 > 0:
            assert self._enc is not None
            factors = replicate(self.config.l2 * b * self._penalized, self.period, he.slot_count)
            grad = he.add_product(grad, self._enc, factors)
        bound = 2.0**self.config.mask_bits * power_of_two_above(b * self._x_bound * D_MAX)
        masked, pending.masks = he.mask(grad, bound)
        request = he.relabel(masked, b / self.config.learning_rate_at(key.epoch))
        pending.sent_scale = he.scales(request)[0]
        return self._steps.store(key, residual, request)

    def update(self, key: StepKey, refreshed: bytes) -> None:
        """Unmask the arbiter's fresh step and subtract it; a repeated (epoch, batch) is a no-op."""
        self._check_key(key, "update")
        if (
            self._steps.lookup(key, refreshed) is not None
            or (key.epoch, key.batch) <= self._last_update
        ):
            return
        he, _ = self._opened()
        pending = self._pending_for(key)
        if pending.masks is None:
            raise ProtocolError(f"batch {pending.batch} has no gradient to update from")
        if he.scales(refreshed) != [self.w_scale]:
            raise ProtocolError("the arbiter's answer is not one ciphertext at the weights' scale")
        ratio = Fraction(self.w_scale) / Fraction(pending.sent_scale)
        step = he.unmask(refreshed, pending.masks, ratio)
        assert self._enc is not None
        self._enc = he.subtract(self._enc, step)
        self._last_update, self._pending = pending.batch, None
        self._applied += 1
        self._steps.store(key, refreshed, b"")

    def _close_epoch(self, epoch: int) -> bool:
        """Record the end of `epoch` and keep its weights (any epoch may turn out the best: only
        L knows, and F is told only with the final model); False if already recorded."""
        if epoch < self._next_epoch:
            return False
        if epoch != self._next_epoch or self._pending is not None or self._enc is None:
            raise ProtocolError(
                f"cannot end epoch {epoch}: at epoch {self._next_epoch}, batch open"
            )
        self._snapshots[epoch] = self._enc
        self._next_epoch, self._applied = epoch + 1, 0
        return True

    def _own_key(self) -> LrHe:
        """The key the arbiter re-encrypts this party's final weights under (L: its own)."""
        return self._suite.own_key(self.config.params)

    def reveal_request(self, best_epoch: int) -> bytes:
        """[w] of the best epoch masked, and this party's own public context, for the arbiter."""
        he, _ = self._opened()
        best = self._snapshots.get(best_epoch)
        if best is None:
            raise ProtocolError(f"no weights of epoch {best_epoch} to reveal "
                                f"(epochs kept: {sorted(self._snapshots)})")
        if self._reveal is None:
            masked, masks = he.mask(best, 2.0**self.config.mask_bits * W_MAX)
            own = self._own_key()
            self._reveal = (masks, own, pack_frames([masked, own.public_bytes()]))
        return self._reveal[2]

    def finish(self, reencrypted: bytes) -> None:
        """Read the final weights: unmask under this party's own key, average the copies."""
        if self._reveal is None:
            raise ProtocolError("finish before the weights were revealed")
        masks, own, _ = self._reveal
        values = own.decrypt(own.unmask(reencrypted, masks))
        copies = values[: (values.size // self.period) * self.period].reshape(-1, self.period)
        self.weights = copies.mean(axis=0)[: self.n_features]

    def _base_state(self) -> dict[str, object]:
        return {
            "job": self.job,
            "weights": np.frombuffer(self._enc or b"", dtype=np.uint8).copy(),
            "snapshots": np.frombuffer(pack_frames(
                [part for e, data in sorted(self._snapshots.items())
                 for part in (str(e).encode(), data)]), dtype=np.uint8).copy(),
            "arbiter": np.frombuffer(self._arbiter_id, dtype=np.uint8).copy(),
            "n_features": self.n_features,
            "next_epoch": self._next_epoch,
            "last_update": self._last_update,
            "applied_in_epoch": self._applied,
        }

    def _load_base_state(self, state: dict[str, object]) -> None:
        if state["job"] != self.job or int(state["n_features"]) != self.n_features:  # type: ignore[call-overload]
            raise ValueError("checkpoint belongs to another job or model shape")
        self._enc = np.asarray(state["weights"], dtype=np.uint8).tobytes() or None
        frames = unpack_frames(np.asarray(state["snapshots"], dtype=np.uint8).tobytes())
        self._snapshots = {int(frames[i]): frames[i + 1] for i in range(0, len(frames), 2)}
        self._arbiter_id = np.asarray(state["arbiter"], dtype=np.uint8).tobytes()
        self._next_epoch = int(state["next_epoch"])  # type: ignore[call-overload]
        last = state["last_update"]
        if not isinstance(last, tuple | list | np.ndarray) or len(last) != 2:
            raise ValueError("checkpoint has no (epoch, batch) of the last update")
        self._last_update = (int(last[0]), int(last[1]))
        self._applied = int(state.get("applied_in_epoch", 0))  # type: ignore[call-overload]
        self._pending = None
        self._steps.clear()

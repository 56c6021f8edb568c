"""The joint-scoring interface every algorithm implements, by algorithm (from the registry).

A request for n enterprises runs the same four operations whatever the model:
  bank      BankPart.request(no, own rows, present) -> bytes      the model's request (or b"")
  feature   FeaturePart.partial(no, values, present, request)     (partial logits, model part)
  relay     RelayPart.combine(no, {node: model part}) -> bytes    sum under the bank's key
  bank      BankPart.finish(no, own rows, present, others, sum)   joint logits, reason weights
`own rows` and `values` are the party's columns named by the part's `features`, in that order
(the node takes them from its table by name, so a reordered table scores the same); rows a
party does not hold are flagged by `present` False (their values are meaningless). The
partial logits travel as CKKS sums (node/coordinator do that, the same for every model); the model
part is the algorithm's own ciphertext (SecureBoost: BFV leaf selectors; LR: nothing).
Implementations satisfy these protocols structurally (they do not import this module).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from models.registry import ALGORITHMS


class BankPart(Protocol):
    """The bank's own part of a trained model, with any scoring key of its own."""

    @property
    def features(self) -> tuple[str, ...]:
        """The bank's own columns the model reads, in its order: of `own_rows` and of
        `finish`'s reason weights."""
        ...

    @property
    def reason_names(self) -> tuple[str, ...]:
        """What each column of `finish`'s reason weights is called (its own features, or more:
        a scorecard adds the feature nodes' data as one characteristic)."""
        ...

    @property
    def public_context(self) -> bytes:
        """Public key material the feature nodes and the relay need (b"": none)."""
        ...

    @property
    def private_key(self) -> bytes:
        """The bank's own scoring key, for its 0600 key file (b"": none)."""
        ...

    def request(self, number: int, own_rows: np.ndarray, present: np.ndarray) -> bytes: ...

    def discard(self, number: int) -> None:
        """Forget a request that will never be answered."""
        ...

    def finish(self, number: int, own_rows: np.ndarray, present: np.ndarray,
               others: np.ndarray, combined: bytes) -> tuple[np.ndarray, np.ndarray]:
        """(joint logits, reason weights): per row how much each of `features` pushes towards
        default; `others` is the decrypted sum of the feature nodes' partial logits."""
        ...


class FeaturePart(Protocol):
    """A feature node's part of a trained model, under the requesting bank's public key."""

    @property
    def features(self) -> tuple[str, ...]:
        """This node's columns the model reads, in its order: the columns of `values`."""
        ...

    def partial(self, number: int, values: np.ndarray, present: np.ndarray,
                request: bytes) -> tuple[np.ndarray, bytes]: ...


class RelayPart(Protocol):
    """The coordinator's part: adds the feature nodes' model parts with public keys only."""

    def combine(self, number: int, parts: Mapping[str, bytes]) -> bytes: ...


class ScoringKind(Protocol):
    """How one algorithm's saved parts score: where they live and how each side loads."""

    @property
    def model_file(self) -> str:
        """The file each party saved its part in, in `state/models/<job>/`."""
        ...

    @property
    def key_file(self) -> str:
        """The bank's own scoring key file in `state/scoring/<job>/` ("": none)."""
        ...

    def load_bank(self, folder: Path, job: str, private_key: bytes) -> BankPart:
        """The bank's part from `folder`; private_key b"": make a fresh scoring key."""
        ...

    def load_feature(self, folder: Path, job: str, public_context: bytes) -> FeaturePart: ...

    def relay(self, job: str, public_context: bytes) -> RelayPart: ...


SCORING_KINDS: dict[str, ScoringKind] = {name: a.scoring for name, a in ALGORITHMS.items()
                                         if a.scoring is not None}  # models that score

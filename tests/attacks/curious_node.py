"""A real node process that keeps what its role holds in the clear: the curious party of DESIGN §0.

Run as `python -m tests.attacks.curious_node <node CLI args>` with FEDCREDIT_CURIOUS_OUT naming a
folder. It patches the vertical-LR role classes in this process only, then runs the node CLI
unchanged. A curious feature node records, per batch, the batch positions it was sent, its weights
and its plaintext gradient X^T d exactly as `GradientParty.update` computes it (the arbiter's answer
minus the node's own masks); a curious bank records every epoch's decrypted Σ_F u_F on its
validation rows, exactly as `LabelParty.end_epoch` computes it. Each party also writes its own
ground truth at set-up (F: its design matrix; L: labels and plan) so tests can score the attacks.
Nothing here is imported by production code.
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from models.vlr import StepKey, decode_values
from models.vlr.feature import FeatureParty
from models.vlr.label import LabelParty

OUT_ENV = "FEDCREDIT_CURIOUS_OUT"


def install(out: Path) -> None:
    """Wrap the role methods whose inputs a curious party keeps."""
    out.mkdir(parents=True, exist_ok=True)
    feature_open, feature_update = FeatureParty.open, FeatureParty.update
    label_open, label_end_epoch = LabelParty.open, LabelParty.end_epoch

    def open_feature(self: FeatureParty, arbiter: bytes, validation: bytes, plan: bytes) -> None:
        feature_open(self, arbiter, validation, plan)
        np.savez(out / f"{self.job}.{self.name}.open.npz", design=np.asarray(self._design),
                 validation=self._validation, train=np.flatnonzero(self._train))

    def update(self: FeatureParty, key: StepKey, decrypted: bytes) -> None:
        pending = self._pending
        if (pending is not None and pending.masks is not None and self._layout is not None
                and pending.batch == (key.epoch, key.batch)
                and pending.batch > self._last_update):
            answer = decode_values(decrypted, self.n_features)
            gradient = answer - pending.masks.reshape(-1)[self._layout.output_slots()]
            np.savez(out / f"{self.job}.{self.name}.grad.{key.epoch}.{key.batch}.npz",
                     positions=pending.positions, weights=self.weights, answer=answer,
                     gradient=gradient)
        feature_update(self, key, decrypted)

    def open_label(self: LabelParty, arbiter: bytes) -> None:
        label_open(self, arbiter)
        np.savez(out / f"{self.job}.bank.open.npz", labels=self.labels, train=self.train,
                 validation=self.validation)

    def end_epoch(self: LabelParty, epoch: int, parts: Mapping[str, bytes]) -> object:
        if epoch >= self.next_epoch and parts and self._own_key is not None:
            summed = self._own_key.add([parts[n] for n in self.feature_parties])
            np.savez(out / f"{self.job}.bank.validation.{epoch}.npz",
                     validation=self.validation, sums=self._own_key.decrypt(summed))
        return label_end_epoch(self, epoch, parts)

    FeatureParty.open = open_feature  # type: ignore[method-assign,assignment]
    FeatureParty.update = update  # type: ignore[method-assign,assignment]
    LabelParty.open = open_label  # type: ignore[method-assign,assignment]
    LabelParty.end_epoch = end_epoch  # type: ignore[method-assign,assignment]


if __name__ == "__main__":
    install(Path(os.environ[OUT_ENV]))
    sys.argv = ["fedcredit", *sys.argv[1:]]
    runpy.run_module("fedcredit.cli.main", run_name="__main__", alter_sys=True)

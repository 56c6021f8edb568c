"""A real node process that keeps what its role holds in the clear: the curious party of DESIGN §0.

Run as `python -m tests.attacks.curious_node <node CLI args>` with FEDCREDIT_CURIOUS_OUT naming a
folder. It patches the vertical-LR role classes in this process only, then runs the node CLI
unchanged. A curious feature node records, per batch, the batch positions it was sent, its weights
and its plaintext gradient X^T d exactly as `GradientParty.update` computes it (the arbiter's answer
minus the node's own masks); a curious bank records every epoch's decrypted Σ_F u_F on its
validation rows, exactly as `LabelParty.end_epoch` computes it. Each party also writes its own
ground truth at set-up (F: its design matrix; L: labels and plan) so tests can score the attacks.
For SecureBoost (`install_sbt`) a curious bank keeps its own state of each tree (gradients, which
rows it put where) and pairs every histogram request it sent with the answer it decrypted, exactly
as `tests/attacks/sbt_transcript.py::bank_view` decodes an in-process run; a curious feature node
keeps its own columns and bin codes (ground truth for scoring). What the feature node *received*
is not recorded here: the test opens it off the wire with the node's own sealing key.
Nothing here is imported by production code.
"""

from __future__ import annotations

import os
import pickle
import runpy
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from models.runtime import LocalRun
from models.sbt import StepKey as SbtKey
from models.sbt.feature import FeatureParty as SbtFeature
from models.sbt.label import LabelParty as SbtLabel
from models.sbt.label import _Build
from models.vlr import StepKey, decode_values
from models.vlr.feature import FeatureParty
from models.vlr.label import LabelParty
from tests.attacks.sbt_transcript import bank_view

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


def install_sbt(out: Path) -> None:
    """Wrap the SecureBoost role methods whose inputs and state a curious party keeps."""
    out.mkdir(parents=True, exist_ok=True)
    start, request, find = SbtLabel._start, SbtLabel.histogram_request, SbtLabel.find_splits
    end_tree, feature_open = SbtLabel.end_tree, SbtFeature.open
    builds: dict[str, list[_Build]] = {}
    payloads: dict[str, list[tuple[str, bytes]]] = {}
    seen: set[tuple[str, str, int, int]] = set()  # a retried step is recorded once

    def first(job: str, step: str, key: SbtKey) -> bool:
        mark = (job, step, key.epoch, key.batch)
        fresh = mark not in seen
        seen.add(mark)
        return fresh

    def keep_start(self: SbtLabel, tree: int) -> _Build:
        build = start(self, tree)
        builds.setdefault(self.job, []).append(build)
        return build

    def histogram_request(self: SbtLabel, key: SbtKey) -> bytes | None:
        data = request(self, key)
        if data and first(self.job, "histogram_request", key):
            payloads.setdefault(self.job, []).append(("histogram_request", data))
        return data

    def find_splits(self: SbtLabel, key: SbtKey, responses: Mapping[str, bytes],
                    ) -> dict[str, bytes]:
        if responses and first(self.job, "histograms", key):
            answer = responses[self.feature_parties[0]]  # one feature node in these jobs
            payloads.setdefault(self.job, []).append(("histograms", answer))
        return find(self, key, responses)

    def end_label_tree(self: SbtLabel, tree: int) -> dict[str, bytes]:
        topologies = end_tree(self, tree)
        view = bank_view(LocalRun(payloads=list(payloads.get(self.job, []))), self,
                         builds.get(self.job, []), self.config)
        with (out / f"{self.job}.bank.sbt.pkl").open("wb") as f:
            pickle.dump({"view": view, "labels": self.labels}, f)
        return topologies

    def open_feature(self: SbtFeature, public_context: bytes) -> None:
        feature_open(self, public_context)
        assert self._binning is not None
        np.savez(out / f"{self.job}.{self.name}.sbt.npz", own=self.aligned_values(),
                 codes=self._binning.codes)

    SbtLabel._start = keep_start  # type: ignore[method-assign]
    SbtLabel.histogram_request = histogram_request  # type: ignore[method-assign]
    SbtLabel.find_splits = find_splits  # type: ignore[method-assign]
    SbtLabel.end_tree = end_label_tree  # type: ignore[method-assign]
    SbtFeature.open = open_feature  # type: ignore[method-assign]


if __name__ == "__main__":
    install(Path(os.environ[OUT_ENV]))
    install_sbt(Path(os.environ[OUT_ENV]))
    sys.argv = ["fedcredit", *sys.argv[1:]]
    runpy.run_module("fedcredit.cli.main", run_name="__main__", alter_sys=True)

"""A real node process that keeps what its role holds in the clear: the curious party of DESIGN §0.

Run as `python -m tests.attacks.curious_node <node CLI args>` with FEDCREDIT_CURIOUS_OUT naming a
folder. It patches the role classes in this process only, then runs the node CLI unchanged.

Vertical LR (label-private, issue 11): a party holds in the clear only its own data, the batch
positions, its own randomness (the masks it draws), the ciphertexts it receives (it holds no key
for them) and its own final weights; F is told which epoch they are from only with them (the
reveal step's `best_epoch`), no verdict per epoch. A curious feature node keeps, per batch, the
positions, the residual [d] and the arbiter's refreshed step exactly as the bytes arrived, and its
masks; the epochs it ended; at the end the best epoch it was told, its final weights and the
masks of its reveal. A curious bank keeps every value it decrypts: each epoch's loss vector (every
slot, not only the scalar it reads) and the final validation rows' Σ_F u_F, plus its masks. Masks
serve only the harness (the arbiter test subtracts them from what the arbiter decrypted to get the
true values). Each party also writes its ground truth (F: its design; L: labels and plan), and one
pickle per job and party when the job ends.
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
from typing import Any

import numpy as np

from crypto.he.lr import CkksLr
from models.runtime import LocalRun
from models.sbt import StepKey as SbtKey
from models.sbt.feature import FeatureParty as SbtFeature
from models.sbt.label import LabelParty as SbtLabel
from models.sbt.label import _Build
from models.vlr import StepKey
from models.vlr.feature import FeatureParty
from models.vlr.label import LabelParty
from models.vlr.layout import GradientParty
from tests.attacks.sbt_transcript import bank_view

OUT_ENV = "FEDCREDIT_CURIOUS_OUT"


def _masks(drawn: Mapping[str, Any]) -> dict[str, Any]:
    """The last masks this process drew: the bound asked for, each chunk's coefficient limit and
    the integer coefficients (exact, as Python ints)."""
    return {"bound": drawn["bound"], "limits": drawn["limits"],
            "coeffs": [np.array(m, dtype=object) for m in drawn["coeffs"]]}


def install(out: Path) -> None:
    """Wrap the label-private VLR role methods whose inputs and outputs a curious party keeps."""
    out.mkdir(parents=True, exist_ok=True)
    kept: dict[tuple[str, str], dict[str, Any]] = {}  # (job, party) -> transcript
    drawn: dict[str, Any] = {}
    mask, gradient, update = CkksLr.mask, GradientParty.gradient, GradientParty.update
    reveal, finish = GradientParty.reveal_request, GradientParty.finish
    f_open, f_forward, f_end = FeatureParty.open, FeatureParty.forward, FeatureParty.end_epoch
    l_open, l_loss, l_sum = LabelParty.open, LabelParty.loss_request, LabelParty.loss_sum
    l_end, l_metrics = LabelParty.end_epoch, LabelParty.metrics

    def name(self: GradientParty) -> str:
        return self.name if isinstance(self, FeatureParty) else "bank"

    def record(self: GradientParty) -> dict[str, Any]:
        return kept.setdefault((self.job, name(self)), {"batches": {}, "epochs": {}})

    def batch(self: GradientParty, key: StepKey) -> dict[str, Any]:
        entry: dict[str, Any] = record(self)["batches"].setdefault((key.epoch, key.batch), {})
        return entry

    def dump(self: GradientParty) -> None:
        with (out / f"{self.job}.{name(self)}.vlr.pkl").open("wb") as f:
            pickle.dump(record(self), f)

    def keep_mask(self: CkksLr, data: bytes, bound: float) -> tuple[bytes, Any]:
        masked, coeffs = mask(self, data, bound)
        drawn.update(bound=bound, limits=[int(s * bound) for s in self.scales(data)],
                     coeffs=coeffs)
        return masked, coeffs

    def keep_gradient(self: GradientParty, key: StepKey, residual: bytes) -> bytes:
        fresh = self._pending is not None and self._pending.masks is None
        request = gradient(self, key, residual)
        if fresh:
            entry = batch(self, key)
            entry.update(masks=_masks(drawn), sent_scale=self._pending.sent_scale
                         if self._pending else 0.0)
            if isinstance(self, FeatureParty):
                entry["residual"] = residual  # [d] under the arbiter's key, as received
        return request

    def keep_update(self: GradientParty, key: StepKey, refreshed: bytes) -> None:
        if isinstance(self, FeatureParty) and (key.epoch, key.batch) > self._last_update:
            batch(self, key)["refreshed"] = refreshed  # the arbiter's answer, as received
        update(self, key, refreshed)

    def keep_reveal(self: GradientParty, best_epoch: int) -> bytes:
        fresh = self._reveal is None
        request = reveal(self, best_epoch)
        if fresh:
            record(self).update(reveal_masks=_masks(drawn), best_epoch=best_epoch)
        return request

    def keep_finish(self: GradientParty, reencrypted: bytes) -> None:
        finish(self, reencrypted)
        record(self).update(final_weights=self.weights.copy(), revealed=reencrypted)
        if isinstance(self, FeatureParty):
            dump(self)

    def open_feature(self: FeatureParty, arbiter: bytes, validation: bytes, plan: bytes) -> None:
        f_open(self, arbiter, validation, plan)
        np.savez(out / f"{self.job}.{self.name}.open.npz", design=np.asarray(self._design),
                 validation=self._validation, train=np.flatnonzero(self._train))
        record(self).update(plan=plan, contexts=(len(arbiter), len(validation)))

    def forward(self: FeatureParty, key: StepKey, positions: bytes) -> bytes:
        answer = f_forward(self, key, positions)
        batch(self, key)["positions"] = np.frombuffer(positions, dtype="<u4").astype(np.int64)
        return answer

    def end_feature(self: FeatureParty, epoch: int) -> None:
        if epoch >= self.next_epoch:
            record(self)["epochs"][epoch] = {}  # all it learns: the epoch is over
        f_end(self, epoch)

    def open_label(self: LabelParty, arbiter: bytes) -> None:
        l_open(self, arbiter)
        np.savez(out / f"{self.job}.bank.open.npz", labels=self.labels, train=self.train,
                 validation=self.validation)

    def loss_request(self: LabelParty, epoch: int, parts: Mapping[str, bytes]) -> bytes:
        masked = l_loss(self, epoch, parts)
        record(self)["epochs"].setdefault(epoch, {})["logit_masks"] = _masks(drawn)
        return masked

    def loss_sum(self: LabelParty, refreshed: bytes) -> bytes:
        request = l_sum(self, refreshed)
        record(self)["epochs"].setdefault(self.next_epoch, {})["loss_masks"] = _masks(drawn)
        return request

    def end_label(self: LabelParty, epoch: int, loss_part: bytes) -> object:
        if epoch >= self.next_epoch and "loss" in self._epoch_masks and self._own is not None:
            own = self._own  # every slot L decrypts, as `LabelParty.end_epoch` decrypts them
            values = own.decrypt(own.unmask(loss_part, self._epoch_masks["loss"]))
            record(self)["epochs"].setdefault(epoch, {})["decrypted"] = values
        report = l_end(self, epoch, loss_part)
        record(self)["epochs"][epoch]["loss"] = getattr(report, "loss", None)
        return report

    def metrics(self: LabelParty, parts: Mapping[str, bytes]) -> object:
        report = l_metrics(self, parts)
        if parts and self._own is not None:  # as `LabelParty.metrics` decrypts them
            hosts = self._own.decrypt(self._own.add([parts[n] for n in self.feature_parties]))
            record(self)["final_hosts"] = hosts[: self.validation.size]
        record(self)["report"] = report
        dump(self)
        return report

    CkksLr.mask = keep_mask  # type: ignore[method-assign]
    GradientParty.gradient = keep_gradient  # type: ignore[method-assign]
    GradientParty.update = keep_update  # type: ignore[method-assign]
    GradientParty.reveal_request = keep_reveal  # type: ignore[method-assign]
    GradientParty.finish = keep_finish  # type: ignore[method-assign]
    FeatureParty.open = open_feature  # type: ignore[method-assign]
    FeatureParty.forward = forward  # type: ignore[method-assign]
    FeatureParty.end_epoch = end_feature  # type: ignore[method-assign]
    LabelParty.open = open_label  # type: ignore[method-assign]
    LabelParty.loss_request = loss_request  # type: ignore[method-assign]
    LabelParty.loss_sum = loss_sum  # type: ignore[method-assign]
    LabelParty.end_epoch = end_label  # type: ignore[method-assign,assignment]
    LabelParty.metrics = metrics  # type: ignore[method-assign,assignment]


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

"""In-process runner: drives L and every F through SecureBoost's steps, counting the bytes moved."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.sbt import StepKey
from models.sbt.feature import FeatureParty
from models.sbt.label import LabelParty
from models.sbt.scoring import FeatureScorer, LabelScorer, ScoreRelay


@dataclass
class LocalRun:
    """Wall time and bytes per tree; with `capture`, every payload that crossed a party boundary."""

    tree_seconds: list[float] = field(default_factory=list)
    tree_bytes: list[int] = field(default_factory=list)
    setup_seconds: float = 0.0
    setup_bytes: int = 0
    bytes_by_message: Counter[str] = field(default_factory=Counter)
    payloads: list[tuple[str, bytes]] = field(default_factory=list)


class Wire:
    """Counts (and optionally keeps) the bytes handed from one role to another."""

    def __init__(self, run: LocalRun, capture: bool) -> None:
        self.run, self.capture, self.total = run, capture, 0

    def carry(self, kind: str, data: bytes, copies: int = 1) -> bytes:
        self.run.bytes_by_message[kind] += len(data) * copies
        self.total += len(data) * copies
        if self.capture:
            self.run.payloads.append((kind, data))
        return data


def run_local(
    label: LabelParty,
    features: Sequence[FeatureParty],
    *,
    capture: bool = False,
    stop_after_tree: int | None = None,
) -> LocalRun:
    """Build trees until L has `config.trees` of them (or pause after `stop_after_tree`)."""
    by_name = {f.name: f for f in features}
    if tuple(sorted(by_name)) != label.feature_parties:
        raise ValueError(f"L expects parties {label.feature_parties}, got {sorted(by_name)}")
    run = LocalRun()
    started, setup = time.perf_counter(), Wire(run, capture)
    context = setup.carry("public_context", label.open(), len(features))
    for party in features:
        party.open(context)
    run.setup_seconds, run.setup_bytes = time.perf_counter() - started, setup.total
    job, config = label.job, label.config
    while not label.done:
        tree = len(label.trees)
        if stop_after_tree is not None and tree > stop_after_tree:
            break
        started, wire = time.perf_counter(), Wire(run, capture)
        for level in range(config.depth):
            key = StepKey(job, tree, level, "histograms")
            request = label.histogram_request(key)
            answers: dict[str, bytes] = {}
            if request is not None:
                wire.carry("histogram_request", request, len(features))
                answers = {
                    f.name: wire.carry("histograms", f.histograms(key, request)) for f in features
                }
            splits = label.find_splits(StepKey(job, tree, level, "find_splits"), answers)
            parts = {
                name: wire.carry(
                    "partitions",
                    by_name[name].split(
                        StepKey(job, tree, level, "split"), wire.carry("split_request", data)
                    ),
                )
                for name, data in splits.items()
            }
            label.apply_splits(StepKey(job, tree, level, "apply_splits"), parts)
        for name, topology in label.end_tree(tree).items():
            by_name[name].end_tree(tree, wire.carry("topology", topology))
        run.tree_seconds.append(time.perf_counter() - started)
        run.tree_bytes.append(wire.total)
    return run


def score_local(
    label: LabelParty,
    features: Sequence[FeatureParty],
    positions: np.ndarray,
    own_rows: np.ndarray,
    *,
    request: int = 0,
) -> tuple[np.ndarray, int]:
    """Jointly score training positions (L's columns of them in `own_rows`): margins, bytes."""
    key = StepKey(label.job, request, 0, "score")
    scorer = LabelScorer(label)
    asked = scorer.request(key, positions, own_rows)
    if not features:
        return scorer.finish(key, None), 0
    parts = {f.name: FeatureScorer(f).score(key, asked) for f in features}
    combined = ScoreRelay(label.he.public_bytes(), suite=label.suite).combine(key, parts)
    moved = len(asked) * len(features) + sum(map(len, parts.values())) + len(combined)
    return scorer.finish(key, combined), moved

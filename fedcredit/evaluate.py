"""Outside the network: the same models on pooled data and on the bank's data alone, for reports.

Only the demo and benchmarks do this (they own every party's files on one machine); a real
deployment has no place where the pooled data exists. The XGBoost baseline needs the optional
`baselines` extra; without it the figure is null and a note says how to install it.
"""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.metrics import auc
from models.vlr import FeatureAlignment, VlrConfig
from models.vlr.centralized import pooled_design, train_centralized
from models.vlr.label import split_positions
from node.alignment import AlignmentStore
from node.columns import model_columns
from node.config import DataConfig
from node.datasource import NodeTable, load_table

BASELINES_EXTRA = "pip install 'fedcredit[baselines]'"


def missing_baseline(module: str) -> str | None:
    """None when ``module`` (xgboost, sklearn) can be imported, else a note saying how to get it."""
    if importlib.util.find_spec(module) is None:
        return f"{module} not installed: {BASELINES_EXTRA}"
    return None


def load_party_tables(data: Mapping[str, dict[str, Any]], label: str) -> dict[str, NodeTable]:
    return {name: load_table(DataConfig(**spec), "label" if name == label else "feature")
            for name, spec in data.items()}


def compare_vlr(state_root: Path, tables: Mapping[str, NodeTable], label: str,
                features: Sequence[str], align_job: str, config: VlrConfig,
                segments: Path | None = None) -> dict[str, Any]:
    """AUC of the centralised model (all parties pooled) and of the bank-only model, on the
    validation rows the federated job used; per segment when `segments` is given."""
    bank = tables[label].training_view()
    assert bank.y is not None
    order = AlignmentStore(state_root / label).load_order(align_job)
    x_label, y = bank.X[order], bank.y[order].astype(np.float64)
    aligned = []
    for name in features:
        found = AlignmentStore(state_root / name).load_feature(align_job)
        aligned.append((tables[name].X, FeatureAlignment(n_rows=found.n_rows,
                                                         positions=found.positions,
                                                         own_rows=found.own_rows)))
    _, validation = split_positions(len(y), config)
    out: dict[str, Any] = {}
    scores = {}
    for variant, parts in (("centralized", aligned), ("bank_only", [])):
        design, penalized = pooled_design(x_label, parts, config)
        result = train_centralized(design, y, penalized, config)
        scores[variant] = design[validation] @ result.weights
        out[f"auc_{variant}"] = float(auc(y[validation], scores[variant]))
    if segments is not None:
        out["segments"] = _by_segment(segments, [bank.ids[i] for i in order[validation]],
                                      y[validation], scores)
    return out


def _by_segment(path: Path, ids: list[str], y: np.ndarray,
                scores: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    with path.open() as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    tiers = np.asarray([int(rows[i]["tier"]) for i in ids])
    white = np.asarray([rows[i]["credit_white"] == "1" for i in ids])
    groups = {"tier_1": tiers == 1, "tier_2_3": tiers >= 2, "credit_white": white,
              "with_history": ~white}
    out = {}
    for name, mask in groups.items():
        if 0 < y[mask].sum() < mask.sum():
            out[name] = {"rows": int(mask.sum()),
                         **{f"auc_{v}": round(float(auc(y[mask], s[mask])), 4)
                            for v, s in scores.items()}}
    return out


def plaintext_probabilities(state_root: Path, tables: Mapping[str, NodeTable], job: str,
                            ids: Sequence[str]) -> np.ndarray:
    """The joint model's probabilities computed in the clear from every party's saved part."""
    from models.vlr.scoring import PartyModel

    total = np.zeros(len(ids))
    for name, table in tables.items():
        model = PartyModel.load(state_root / name / "models" / job / "model.json")
        row_of = {ident: row for row, ident in enumerate(table.ids)}
        rows = np.fromiter((row_of.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        present = rows >= 0
        own = model_columns(table, model.features, party=name, model=f"the model of job {job}")
        total += model.partial_logits(own[np.where(present, rows, 0)], present)
    out: np.ndarray = 1.0 / (1.0 + np.exp(-total))
    return out


def pooled_rows(state_root: Path, tables: Mapping[str, NodeTable], label: str,
                features: Sequence[str], align_job: str) -> tuple[np.ndarray, np.ndarray]:
    """Every party's raw columns side by side on the bank's rows (NaN where a party lacks the
    row), in the job's training order, with the labels: the pooled data nobody really has."""
    bank = tables[label].training_view()
    assert bank.y is not None
    order = AlignmentStore(state_root / label).load_order(align_job)
    blocks = [bank.X[order]]
    for name in features:
        found = AlignmentStore(state_root / name).load_feature(align_job)
        block = np.full((found.n_rows, tables[name].X.shape[1]), np.nan)
        block[found.positions] = tables[name].X[found.own_rows]
        blocks.append(block)
    return np.hstack(blocks), bank.y[order].astype(np.float64)


def compare_sbt(state_root: Path, tables: Mapping[str, NodeTable], label: str,
                features: Sequence[str], align_job: str, settings: dict[str, Any],
                ) -> dict[str, Any]:
    """Local XGBoost with the same settings on the pooled rows (train = test, as FATE does).

    Without xgboost installed the figures are None and `baseline_note` says so.
    """
    from models.sbt import SbtConfig
    from models.sbt.centralized import train_xgboost

    note = missing_baseline("xgboost")
    if note is not None:
        return {"auc_xgboost": None, "xgboost_seconds_per_tree": None, "baseline_note": note}
    x, y = pooled_rows(state_root, tables, label, features, align_job)
    _, seconds_per_tree, auc_xgb = train_xgboost(x, y, SbtConfig(**settings))
    return {"auc_xgboost": float(auc_xgb), "xgboost_seconds_per_tree": float(seconds_per_tree)}

"""The WOE scorecard, declared once: vertical LR's steps and driver on WOE inputs, with its own
`finish` (each party keeps its points table) and `metrics` (the bank keeps the nodes' point
ranges). See the package docstring for the design and what each party learns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from common.errors import DataValidationError, ProtocolError
from crypto.he.interface import LrSuite
from crypto.he.lr_arbiter import CKKS_LR_SUITE
from models.binning.algorithm import ALGORITHM as BINNING
from models.binning.bins import ColumnBins
from models.binning.feature import load_bins
from models.protocol import Algorithm, Call, Output, RoleSetup, Send, Step, To
from models.scorecard import ScorecardConfig
from models.scorecard.points import PartyCard
from models.scorecard.scoring import SCORECARD_SCORING
from models.vlr import FeatureAlignment
from models.vlr.algorithm import ALGORITHM as VLR
from models.vlr.feature import FeatureParty
from models.vlr.label import LabelParty


class CardLabel(LabelParty):
    """The bank's vertical LR role on its WOE columns, knowing its bins."""

    def __init__(self, job: str, woe: np.ndarray, labels: np.ndarray,
                 feature_parties: Sequence[str], config: ScorecardConfig,
                 bins: Sequence[ColumnBins], *, suite: LrSuite = CKKS_LR_SUITE) -> None:
        super().__init__(job, woe, labels, feature_parties, config, suite=suite)
        self.card_config, self.bins = config, tuple(bins)


class CardFeature(FeatureParty):
    """A feature node's vertical LR role on its WOE columns (every training position: rows it
    does not hold are in its missing slot, as in binning), knowing its bins."""

    def __init__(self, name: str, job: str, woe: np.ndarray, config: ScorecardConfig,
                 bins: Sequence[ColumnBins], *, suite: LrSuite = CKKS_LR_SUITE) -> None:
        n = woe.shape[0]
        super().__init__(name, job, woe, FeatureAlignment(n, np.arange(n), np.arange(n)), config,
                         suite=suite)
        self.card_config, self.bins = config, tuple(bins)


def _bins(setup: RoleSetup, settings: ScorecardConfig, names: list[str]) -> list[ColumnBins]:
    """This party's bins (with WOE) of `names`, from its own part of the binning job."""
    if setup.stored is None:
        raise ProtocolError("a scorecard needs the node's stored binning job")
    kept = {c.name: c for c in load_bins(setup.stored(settings.binning_job, BINNING.model_file))}
    missing = [n for n in names if n not in kept]
    if missing:
        raise ProtocolError(f"binning job {settings.binning_job} did not bin {missing} at "
                            f"{setup.party}")
    if any(kept[n].woe is None for n in names):
        raise ProtocolError(f"binning job {settings.binning_job} did not share WOE with "
                            f"{setup.party} (share_woe = false): bin again with share_woe")
    if not names:
        raise ProtocolError(f"the scorecard lists no characteristic of {setup.party}")
    return [kept[n] for n in names]


def _selected(setup: RoleSetup, settings: ScorecardConfig) -> None:
    """The bank refuses characteristics its binning job did not select, and feature nodes of the
    job without a characteristic (or characteristics of parties outside the job)."""
    assert setup.stored is not None
    summary = json.loads(setup.stored(settings.binning_job, BINNING.model_file))
    chosen = {f"{c['party']}:{c['name']}" for c in summary.get("characteristics", [])
              if c.get("selected")}
    refused = [c for c in settings.characteristics if c not in chosen]
    if refused:
        raise ProtocolError(f"characteristics {refused} were not selected by binning job "
                            f"{settings.binning_job}")
    parties = {c.split(":", 1)[0] for c in settings.characteristics}
    if parties - {setup.party, *setup.features}:
        raise ProtocolError(f"characteristics of parties outside the job: "
                            f"{sorted(parties - {setup.party, *setup.features})}")
    bare = [f for f in setup.features if f not in parties]
    if bare:
        raise ProtocolError(f"feature nodes {bare} have no characteristic in the scorecard")


def _columns(setup: RoleSetup, names: list[str]) -> list[int]:
    where = {c: k for k, c in enumerate(setup.columns)}
    missing = [n for n in names if n not in where]
    if missing:
        raise ProtocolError(f"{setup.party}'s table lacks columns {missing}")
    return [where[n] for n in names]


def prepare(settings: ScorecardConfig, parties: Sequence[str],
            report: Callable[[str], Mapping[str, Any] | None]) -> ScorecardConfig:
    """No characteristics named: every one the binning job selected of the job's parties (its
    IV table, which the coordinator holds as that job's report)."""
    if settings.characteristics:
        return settings
    found = report(settings.binning_job)
    if found is None or "iv_table" not in found:
        raise DataValidationError(f"binning_job {settings.binning_job!r}: no finished binning "
                                  "job of that name; run `fedcredit train binning` first")
    chosen = [f"{r['party']}:{r['name']}" for r in found["iv_table"]
              if r.get("selected") and r.get("party") in parties]
    if not chosen:
        raise DataValidationError(f"binning job {settings.binning_job} selected no "
                                  "characteristic of the job's parties")
    return settings.model_copy(update={"characteristics": chosen})


def make_role(setup: RoleSetup, settings: ScorecardConfig, *,
              suite: LrSuite = CKKS_LR_SUITE) -> CardLabel | CardFeature:
    """A party's vertical LR role on its WOE columns (`suite`: the plaintext twin in tests)."""
    if not settings.characteristics:
        raise ProtocolError("a scorecard job names no characteristics (the coordinator fills "
                            "them in from the binning job when it is submitted)")
    names = settings.of(setup.party)
    X = np.asarray(setup.X, np.float64)
    if setup.role == "label":
        if setup.y is None:
            raise ProtocolError("a label node needs labels")
        _selected(setup, settings)
        bins = _bins(setup, settings, names) if names else []
        index = _columns(setup, names)
        woe = np.stack([b.transform(X[:, k]) for b, k in zip(bins, index, strict=True)],
                       axis=1) if bins else np.zeros((X.shape[0], 0))
        return CardLabel(setup.job, woe, setup.y, setup.features, settings, bins, suite=suite)
    bins = _bins(setup, settings, names)
    index = _columns(setup, names)
    alignment: FeatureAlignment = setup.alignment
    alignment.validate(X.shape[0])
    values = np.full((alignment.n_rows, len(names)), np.nan)
    held = np.zeros(alignment.n_rows, bool)
    values[np.asarray(alignment.positions)] = X[np.asarray(alignment.own_rows)][:, index]
    held[np.asarray(alignment.positions)] = True
    woe = np.stack([b.transform(values[:, j], held) for j, b in enumerate(bins)], axis=1)
    return CardFeature(setup.party, setup.job, woe, settings, bins, suite=suite)


def party_card(role: CardLabel | CardFeature, party: str) -> PartyCard:
    """The party's points from its final weights (β on the WOE scale, the training mean)."""
    if role.scaler is None:
        raise ProtocolError(f"job {role.job} finished before it was opened")
    k, cfg = len(role.bins), role.card_config
    weights = np.asarray(role.weights, np.float64)
    label = isinstance(role, CardLabel)
    return PartyCard(party=party, role="label" if label else "feature", job=role.job,
                     binning_job=cfg.binning_job, columns=role.bins,
                     beta=weights[:k] / role.scaler.scale[:k], mean=role.scaler.mean[:k].copy(),
                     intercept=float(weights[k]) if label else 0.0,
                     factor=cfg.factor, offset=cfg.offset)


def _finish(role: CardLabel | CardFeature, call: Call) -> Mapping[str, Output]:
    """Final weights (under this party's own key) into its points table, kept here."""
    role.finish(call.part("revealed"))
    card = party_card(role, call.me)
    call.memo["card"] = card
    out: dict[str, Output] = {"model": card.to_json().encode()}
    if isinstance(role, CardFeature):
        low, high = card.total_range()
        out["final_validation"] = role.final_logits()
        out["points_range"] = json.dumps({"min": low, "max": high}).encode()
    return out


def _label_metrics(role: CardLabel, call: Call) -> Mapping[str, Output]:
    """AUC/KS once (as vertical LR); the bank's card keeps each node's min/max total points."""
    report = role.metrics(call.each("final_validation"))
    ranges: dict[str, Any] = {}
    for party, data in call.each("points_range").items():
        found = json.loads(data)
        low, high = float(found["min"]), float(found["max"])
        if not (np.isfinite(low) and np.isfinite(high) and low <= high):
            raise ProtocolError(f"{party} sent a malformed points range")
        ranges[party] = {"min": low, "max": high}
    if sorted(ranges) != sorted(role.feature_parties):
        raise ProtocolError(f"points ranges expected from {role.feature_parties}")
    card: PartyCard = call.memo["card"]
    model = card.to_json({"feature_points": ranges, "metrics": {
        "auc": report.auc, "ks": report.ks, "log_loss": report.loss}})
    return {"report": json.dumps(asdict(report)).encode(), "model": model.encode()}


_REPLACED = {("finish", "label"), ("finish", "feature"), ("metrics", "label")}
STEPS = (*(s for s in VLR.steps if (s.name, s.role) not in _REPLACED),
         Step("finish", "label", _finish, takes=("revealed",), per_batch=False,
              sends=(Send("model", To.STORE),)),
         Step("finish", "feature", _finish, takes=("revealed",), per_batch=False,
              sends=(Send("model", To.STORE), Send("final_validation", To.LABEL),
                     Send("points_range", To.LABEL))),
         Step("metrics", "label", _label_metrics, takes=("final_validation", "points_range"),
              per_batch=False, sends=(Send("report", To.DRIVER), Send("model", To.STORE))))


ALGORITHM = Algorithm(
    name="scorecard",
    summary="WOE scorecard: label-private vertical LR on each party's WOE columns of a binning "
            "job, points per bin kept by each party.",
    purpose="woe scorecard training", settings=ScorecardConfig, steps=STEPS,
    make_role=make_role, apply_floors=VLR.apply_floors, drive=VLR.drive,
    scoring=SCORECARD_SCORING, length_setting="max_epochs", unit="epoch", best=VLR.best,
    prepare=prepare)

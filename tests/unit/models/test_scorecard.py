"""WOE scorecard: points formula, reason codes, the in-process job against its pooled twin."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest

from common.errors import DataValidationError
from common.files import load_state, state_bytes
from crypto.he import PlainTwin
from crypto.he.interface import LrSuite
from crypto.he.lr_arbiter import CKKS_LR_SUITE
from crypto.he.lr_plain import PLAIN_LR_SUITE
from fedcredit.scorecard_twin import pooled_scorecard, woe_matrix
from models.binning import BinningConfig
from models.binning.bins import ColumnBins
from models.binning.feature import load_bins
from models.metrics import auc
from models.protocol import RoleSetup
from models.runtime import LocalRun, run_local
from models.scorecard import JOINT, MAX_REASONS, ScorecardConfig
from models.scorecard.algorithm import ALGORITHM, CardFeature, CardLabel, make_role, prepare
from models.scorecard.points import PartyCard, reason_names, reason_shortfalls
from models.scorecard.scoring import SCORECARD_SCORING
from models.vlr import FeatureAlignment
from models.vlr.arbiter import Arbiter
from node.policy import CreditPolicy
from tests.unit.models.test_binning import federate, give_credit


def _column(name: str, woe: list[float], special: tuple[float, ...] = ()) -> ColumnBins:
    """Two value bins (cut at 0) in a layout of 3 bins: slots 0, 1, (2 empty), special, missing."""
    return ColumnBins(name, np.array([0.0]), bins=3, special_codes=special,
                      woe=np.asarray(woe, np.float64))


def _card(role: str = "label") -> PartyCard:
    columns = (_column("a", [0.5, -0.4, 0.0, 0.1, -0.2], special=(-999.0,)),
               _column("b", [1.0, -1.0, 0.0, 0.0, 0.3]))
    factor = 20 / math.log(2)
    return PartyCard("bank", role, "j", "b", columns, np.array([-0.8, -0.3]),
                     np.array([0.05, 0.1]), -2.0 if role == "label" else 0.0, factor,
                     600 - factor * math.log(50))


def test_points_per_bin_follow_the_formula_and_add_up_to_the_policy_score() -> None:
    card = _card()
    factor = 20 / math.log(2)
    assert card.factor == pytest.approx(28.853900817779268)
    assert card.offset == pytest.approx(600 - factor * math.log(50))
    assert card.slot_points(0)[0] == pytest.approx(-factor * -0.8 * (0.5 - 0.05))
    assert card.base_points == pytest.approx(card.offset + factor * 2.0)
    rows = np.array([[-1.0, 2.0], [3.0, np.nan], [np.nan, -5.0]])
    logits = card.partial_logits(rows)
    total = card.base_points + card.points(rows).sum(axis=1)
    policy = CreditPolicy()  # 600 points at 50:1, 20 points to double the odds
    assert np.allclose(total, policy.scores(1 / (1 + np.exp(-logits))))
    table = card.tables()[0]
    assert [r["bin"] for r in table["bins"]] == ["[-inf, 0)", "[0, inf)", "special", "missing"]
    assert table["max_points"] == pytest.approx(max(card.slot_points(0)[[0, 1, 3, 4]]))
    assert [r["bin"] for r in card.tables()[1]["bins"]][2:] == ["missing"]  # no special codes
    assert card.points(np.array([[-999.0, 1.0]]))[0, 0] == pytest.approx(card.slot_points(0)[3])
    low, high = _card("feature").total_range()
    assert low <= high and high == pytest.approx(card.max_points().sum())
    folded = _card("feature")
    folded.columns[1].missing_to = 0  # held missing values folded into bin 0 (below the floor)
    assert [r["bin"] for r in folded.tables()[1]["bins"]][2:] == ["missing", "not held"]
    again, _ = PartyCard.from_json(card.to_json())
    assert np.allclose(again.points(rows), card.points(rows))


def test_reason_codes_rank_lost_points_with_the_feature_nodes_as_one() -> None:
    own_points = np.array([[10.0, 0.0, 5.0, 1.0, 2.0], [10.0, 20.0, 30.0, 40.0, 50.0]])
    own_max = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    lost = reason_shortfalls(own_points, own_max, np.array([-100.0, 60.0]), 60.0)
    names = reason_names(("c1", "c2", "c3", "c4", "c5"))
    assert names[-1] == JOINT and lost.shape == (2, 6)
    first = [names[j] for j in np.argsort(-lost[0]) if lost[0, j] > 0]
    assert first == [JOINT, "c5", "c4", "c3"]  # at most four, the largest shortfall first
    assert (lost[0] > 0).sum() == MAX_REASONS
    assert not (lost[1] > 0).any()  # every characteristic at its maximum: no reason


def _binned(rows: int) -> tuple[dict[str, bytes], list[str], np.ndarray, np.ndarray,
                                 np.ndarray]:
    """Each party's stored binning job on the first `rows` rows, and the characteristics it
    selected; the bank's columns, labels and the host's columns."""
    bank, y, host = give_credit(rows)
    binning, _, _ = federate(bank, y, host, BinningConfig(bins=20), PlainTwin.suite_for_testing())
    stored = {p: binning.stored[p]["model"] for p in ("bank", "host")}
    chosen = [f"{c['party']}:{c['name']}" for c in json.loads(stored["bank"])["characteristics"]
              if c["selected"]]
    return stored, chosen, bank, y, host


def _roles(stored: dict[str, bytes], bank: np.ndarray, y: np.ndarray, host: np.ndarray,
           config: ScorecardConfig, suite: LrSuite = PLAIN_LR_SUITE,
           ) -> tuple[CardLabel | CardFeature, CardLabel | CardFeature]:
    """The bank's and the host's scorecard roles, as each node makes them (`make_role`)."""
    n = y.size
    setups = {p: RoleSetup(job="card", party=p, role="label" if p == "bank" else "feature",
                           label="bank", features=("host",), columns=tuple(f"x{j}" for j in
                                                                           range(5)),
                           X=bank if p == "bank" else host, y=y if p == "bank" else None,
                           alignment=None if p == "bank" else FeatureAlignment(
                               n, np.arange(n), np.arange(n)),
                           stored=lambda job, name, p=p: stored[p])
              for p in ("bank", "host")}
    role = functools.partial(make_role, suite=suite)
    return role(setups["bank"], config), role(setups["host"], config)


@pytest.fixture(scope="module")
def federated() -> tuple[LocalRun, ScorecardConfig, dict[str, bytes], np.ndarray, np.ndarray,
                         np.ndarray]:
    stored, chosen, bank, y, host = _binned(6000)
    config = ScorecardConfig(binning_job="bin", characteristics=chosen, learning_rate=0.5,
                             batch_size=1024, max_epochs=8, patience=20,
                             validation_fraction=0.3)
    label, feature = _roles(stored, bank, y, host, config)
    run = run_local(ALGORITHM, ("bank", label), {"host": feature}, config, job_id="card",
                    arbiter=Arbiter("card", suite=PLAIN_LR_SUITE))
    return run, config, stored, bank, y, host


def test_federated_points_equal_the_pooled_scorecard(federated: tuple[
        LocalRun, ScorecardConfig, dict[str, bytes], np.ndarray, np.ndarray,
        np.ndarray]) -> None:
    run, config, stored, bank, y, host = federated
    cards = {p: PartyCard.from_json(run.stored[p]["model"].decode()) for p in ("bank", "host")}
    assert set(cards["bank"][1]["feature_points"]) == {"host"}
    assert "feature_points" not in cards["host"][1]
    bins = {p: {c.name: c for c in load_bins(stored[p])} for p in stored}
    own = [bins["bank"][n] for n in config.of("bank")]
    other = [bins["host"][n] for n in config.of("host")]
    own_x = bank[:, [int(n[1:]) for n in config.of("bank")]]
    other_x = host[:, [int(n[1:]) for n in config.of("host")]]
    pooled = pooled_scorecard(("bank", own, woe_matrix(own, own_x)), y,
                              {"host": (other, woe_matrix(other, other_x))}, config)
    worst = max(float(np.max(np.abs(cards[p][0].slot_points(j) - pooled.cards[p].slot_points(j))))
                for p in cards for j in range(len(cards[p][0].columns)))
    assert worst < 1e-6
    assert abs(run.final["auc"] - pooled.auc) <= 0.005  # type: ignore[index]
    assert pooled.sklearn_auc > 0.75


def test_joint_scoring_gives_the_policy_score_and_the_nodes_partials(federated: tuple[
        LocalRun, ScorecardConfig, dict[str, bytes], np.ndarray, np.ndarray,
        np.ndarray], tmp_path: object) -> None:
    run, config, _, bank, y, host = federated
    from pathlib import Path

    folder = {p: Path(str(tmp_path)) / p for p in ("bank", "host")}
    for p, path in folder.items():
        path.mkdir()
        (path / SCORECARD_SCORING.model_file).write_bytes(run.stored[p]["model"])
    b = SCORECARD_SCORING.load_bank(folder["bank"], "card", b"")
    f = SCORECARD_SCORING.load_feature(folder["host"], "card", b"")
    rows = np.arange(50)
    present = np.ones(50, bool)
    present[:5] = False  # the host does not hold these: its missing slots, as in training
    others, _ = f.partial(0, host[rows][:, [int(n[1:]) for n in f.features]], present, b"")
    own = bank[rows][:, [int(n[1:]) for n in b.features]]
    logits, lost = b.finish(0, own, np.ones(50, bool), others, b"")
    points = (b.card.base_points + b.card.points(own).sum(axis=1)
              + f.card.points(host[rows][:, [int(n[1:]) for n in f.features]], present).sum(1))
    scale = CreditPolicy().scores(1 / (1 + np.exp(-logits)))
    assert np.allclose(points, scale)
    assert lost.shape == (50, len(b.reason_names)) and b.reason_names[-1] == JOINT
    assert ((lost > 0).sum(axis=1) <= MAX_REASONS).all()
    assert auc(y[rows], logits) > 0.5
    unknown = np.ones(50, bool)
    unknown[10:20] = False  # enterprises the bank knows nothing of: its missing slots
    again, _ = b.finish(1, own, unknown, others, b"")
    blank = own.copy()
    blank[10:20] = np.nan
    assert np.allclose(again, b.finish(2, blank, np.ones(50, bool), others, b"")[0])


def test_without_characteristics_the_binning_jobs_selection_is_taken() -> None:
    table = [{"party": "bank", "name": "a", "selected": True},
             {"party": "core", "name": "b", "selected": False},
             {"party": "core", "name": "c", "selected": True},
             {"party": "tax", "name": "d", "selected": True}]  # not a party of the job
    reports = {"bin": {"iv_table": table}}
    config = ScorecardConfig(binning_job="bin")
    filled = prepare(config, ["bank", "core"], reports.get)
    assert filled.characteristics == ["bank:a", "core:c"]
    named = ScorecardConfig(binning_job="bin", characteristics=["core:c"])
    assert prepare(named, ["bank", "core"], reports.get) is named  # named ones are kept
    with pytest.raises(DataValidationError, match="no finished binning job"):
        prepare(ScorecardConfig(binning_job="other"), ["bank"], reports.get)


@pytest.mark.parametrize("suite_name", ["twin", "ckks"])
def test_a_job_checkpointed_mid_training_resumes_to_the_same_points_tables(
        suite_name: str) -> None:
    """As a node killed mid-training: each party's state after an epoch goes through the
    node's checkpoint bytes (`node.steps`) into new roles, the arbiter's key comes back from
    the coordinator's vault, and the resumed job ends with the uninterrupted job's cards."""
    suite = PLAIN_LR_SUITE if suite_name == "twin" else CKKS_LR_SUITE
    stored, chosen, bank, y, host = _binned(1500)
    config = ScorecardConfig(binning_job="bin", characteristics=chosen, learning_rate=0.5,
                             batch_size=512, max_epochs=3 if suite_name == "twin" else 2,
                             patience=20, validation_fraction=0.3)

    def run(roles: tuple[CardLabel | CardFeature, CardLabel | CardFeature], arbiter: Arbiter,
            stop_after: int | None = None, resume: bool = False) -> LocalRun:
        return run_local(ALGORITHM, ("bank", roles[0]), {"host": roles[1]}, config,
                         job_id="card", stop_after=stop_after, arbiter=arbiter, resume=resume)

    straight = run(_roles(stored, bank, y, host, config, suite), Arbiter("card", suite=suite))
    first, arbiter = _roles(stored, bank, y, host, config, suite), Arbiter("card", suite=suite)
    paused = run(first, arbiter, stop_after=0)
    saved = [load_state(state_bytes(r.state_dict()), "checkpoint") for r in first]
    resumed = _roles(stored, bank, y, host, config, suite)
    for role, state in zip(resumed, saved, strict=True):
        role.load_state_dict(state)
    again = run(resumed, Arbiter("card", suite=suite, secret=arbiter.secret_bytes()),
                resume=True)

    assert [r["epoch"] for r in paused.reports] == [0] and "bank" not in paused.stored
    assert [r["epoch"] for r in again.reports] == list(range(1, config.max_epochs))
    assert [r["loss"] for r in again.reports] == pytest.approx(
        [r["loss"] for r in straight.reports[1:]], abs=1e-6)
    tolerance = 1e-9 if suite_name == "twin" else 5e-6  # vertical LR's CKKS tolerance on weights
    for party in ("bank", "host"):
        card, meta = PartyCard.from_json(again.stored[party]["model"].decode())
        want, want_meta = PartyCard.from_json(straight.stored[party]["model"].decode())
        assert np.allclose(card.beta, want.beta, atol=tolerance * 10, rtol=0)
        assert card.base_points == pytest.approx(want.base_points, abs=tolerance * card.factor)
        for j, column in enumerate(card.columns):  # points: factor · β · (WOE − μ)
            spread = float(np.ptp(column.woe)) if column.woe is not None else 0.0
            assert np.allclose(card.slot_points(j), want.slot_points(j), rtol=0,
                               atol=tolerance * 10 * card.factor * max(spread, 1.0))
        assert meta.get("feature_points", {}).keys() == want_meta.get("feature_points",
                                                                      {}).keys()
    assert again.final is not None and straight.final is not None
    # WOE scores are discrete: validation rows tie, and CKKS noise (~1e-6 in a logit) breaks
    # ties its own way in each run, which moves the AUC by at most the share of tied pairs
    assert again.final["auc"] == pytest.approx(straight.final["auc"],
                                               abs=1e-6 if suite_name == "twin" else 1e-3)

"""The label-private vertical-LR roles, step by step and end to end, encrypted and twin."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal as ts

from common.errors import ProtocolError
from crypto.he import unpack_frames
from crypto.he.interface import LrSuite
from crypto.he.lr_arbiter import CKKS_LR_SUITE
from crypto.he.lr_plain import PLAIN_LR_SUITE
from fedcredit.bench.vlr import synthetic_vertical
from models.vlr import FeatureAlignment, StepKey, VlrConfig
from models.vlr.arbiter import Arbiter
from models.vlr.centralized import pooled_design, train_centralized
from models.vlr.feature import FeatureParty
from models.vlr.label import LabelParty
from models.vlr.local import run_local

JOB = "job-1"
CONFIG = VlrConfig(
    learning_rate=0.3, batch_size=128, max_epochs=3, patience=5, validation_fraction=0.2
)
Roles = tuple[LabelParty, list[FeatureParty], Arbiter]


def build(suite: LrSuite, config: VlrConfig = CONFIG, rows: int = 600,
          arbiter: Arbiter | None = None) -> Roles:
    """L with 3 features; F1 holds 3 columns of every row, F2 3 columns of 70% of rows."""
    data = synthetic_vertical(rows, 3, 6, seed=5)
    host = data.host_table[np.argsort(data.alignment.own_rows)]  # host rows in L's order
    keep = np.random.default_rng(1).permutation(rows)[: int(rows * 0.7)]
    own = np.random.default_rng(2).permutation(keep.size)
    f2_table = np.empty((keep.size, 3))
    f2_table[own] = host[keep, 3:]
    everyone = FeatureAlignment(rows, np.arange(rows), np.arange(rows))
    f1 = FeatureParty("f1", JOB, host[:, :3], everyone, config, suite=suite)
    f2 = FeatureParty("f2", JOB, f2_table, FeatureAlignment(rows, keep, own), config, suite=suite)
    label = LabelParty(JOB, data.label_features, data.labels, ["f1", "f2"], config, suite=suite)
    return label, [f1, f2], arbiter or Arbiter(JOB, suite=suite)


def weights(label: LabelParty, features: list[FeatureParty]) -> np.ndarray:
    return np.concatenate([label.weights, *(f.weights for f in features)])


def open_all(roles: Roles) -> None:
    label, features, arbiter = roles
    label.open(arbiter.public_context())
    for party in features:
        party.open(arbiter.public_context(), label.validation_context(), label.plan())


def key(step: str, epoch: int = 0, batch: int = 0) -> StepKey:
    return StepKey(JOB, epoch, batch, step)


@pytest.fixture(scope="module")
def encrypted_run() -> tuple[Roles, np.ndarray]:
    roles = build(CKKS_LR_SUITE)
    run_local(*roles)
    return roles, weights(roles[0], roles[1])


def test_encrypted_twin_and_centralized_reach_the_same_weights(
    encrypted_run: tuple[Roles, np.ndarray],
) -> None:
    (label, features, _), encrypted = encrypted_run
    plain_roles = build(PLAIN_LR_SUITE)
    plain_run = run_local(*plain_roles)
    plain = weights(plain_roles[0], plain_roles[1])
    tables = [(f._table, f._alignment) for f in features]
    design, penalized = pooled_design(label._features, tables, CONFIG)
    pooled = train_centralized(design, label.labels, penalized, CONFIG).weights
    assert np.abs(plain).max() > 0.05  # it learned something
    assert np.allclose(encrypted, plain, atol=5e-6)
    assert np.allclose(plain, pooled, atol=1e-9)
    assert [r.loss for r in label.history] == pytest.approx(
        [r.loss for r in plain_roles[0].history], abs=1e-6)
    assert label.final is not None and plain_run.final is not None
    assert label.final.auc == pytest.approx(plain_run.final["auc"], abs=1e-6)
    assert all(r.auc is None for r in label.history)  # no per-epoch scores reach L


def test_parties_receive_a_public_context_only(encrypted_run: tuple[Roles, np.ndarray]) -> None:
    (label, _, arbiter), _ = encrypted_run
    assert not ts.context_from(arbiter.public_context()).is_private()
    assert not ts.context_from(label.validation_context()).is_private()


def _drive_to_gradient(roles: Roles) -> tuple[bytes, bytes]:
    label, features, _ = roles
    positions = label.batch_positions(key("positions"))
    forwards = {f.name: f.forward(key("forward"), positions) for f in features}
    residual = label.residual(key("residual"), forwards)
    return residual, features[0].gradient(key("gradient"), residual)


def test_the_arbiter_sees_masked_steps_and_the_party_never_sees_its_weights() -> None:
    roles = build(CKKS_LR_SUITE)
    open_all(roles)
    label, features, arbiter = roles
    residual, request = _drive_to_gradient(roles)
    party = features[0]
    he = arbiter._he  # white box: what the arbiter could decode if it tried
    d = he.decrypt(residual)
    assert party._pending is not None
    rows = party._pending.positions
    true = party._design[rows].T @ d[: rows.size]
    seen = he.decrypt(request)
    assert np.min(np.abs(seen)) > 1e6 * np.abs(true).max()  # every slot masked, far above g
    answer = arbiter.refresh_step(key("gradient"), party.name, request)
    before = he.decrypt(party._enc)[: party.n_features]
    party.update(key("update"), answer)
    after = he.decrypt(party._enc)[: party.n_features]
    assert np.allclose(before - after, CONFIG.learning_rate * true / rows.size, atol=1e-6)
    assert np.array_equal(party.weights, np.zeros(party.n_features))  # nothing in the clear
    with pytest.raises(ProtocolError, match="different request"):
        arbiter.refresh_step(key("gradient"), party.name, residual)


def test_a_tiny_batch_is_refused_by_the_feature_party() -> None:
    label_config = CONFIG.model_copy(update=dict(min_batch=16))
    label, features, arbiter = build(PLAIN_LR_SUITE, label_config)
    strict = build(PLAIN_LR_SUITE)[1][0]  # F's own floor: 64 rows
    label.open(arbiter.public_context())
    strict.open(arbiter.public_context(), label.validation_context(), label.plan())
    tiny = np.asarray(label.train[:32], dtype="<u4").tobytes()
    with pytest.raises(ProtocolError, match="minimum is 64"):
        strict.forward(key("forward"), tiny)
    with pytest.raises(ValueError, match="fewer than one batch"):
        LabelParty(JOB, np.zeros((40, 2)), np.arange(40) % 2, [], CONFIG, suite=PLAIN_LR_SUITE)


def test_foreign_out_of_plan_and_out_of_order_steps_are_refused() -> None:
    roles = build(PLAIN_LR_SUITE)
    open_all(roles)
    label, features, _ = roles
    positions = label.batch_positions(key("positions"))
    party = features[0]
    with pytest.raises(ProtocolError):
        party.forward(StepKey("other-job", 0, 0, "forward"), positions)
    validation_rows = np.asarray(label.validation[:64], dtype="<u4").tobytes()
    with pytest.raises(ProtocolError, match="outside the training plan"):
        party.forward(key("forward"), validation_rows)
    party.forward(key("forward"), positions)
    with pytest.raises(ProtocolError, match="awaits its update"):
        party.forward(key("forward", batch=1), positions)
    with pytest.raises(ProtocolError, match="different request"):
        party.forward(key("forward"), positions[::-1])
    with pytest.raises(ProtocolError, match="ended before"):
        label.loss_request(0, {"f1": b"", "f2": b""})


def test_retried_steps_answer_the_same_and_update_once() -> None:
    roles = build(PLAIN_LR_SUITE)
    open_all(roles)
    label, features, arbiter = roles
    positions = label.batch_positions(key("positions"))
    assert label.batch_positions(key("positions")) == positions
    party = features[0]
    forward = party.forward(key("forward"), positions)
    assert party.forward(key("forward"), positions) == forward
    forwards = {f.name: f.forward(key("forward"), positions) for f in features}
    residual = label.residual(key("residual"), forwards)
    assert label.residual(key("residual"), forwards) == residual
    request = party.gradient(key("gradient"), residual)
    assert party.gradient(key("gradient"), residual) == request  # same masks, not fresh ones
    answer = arbiter.refresh_step(key("gradient"), party.name, request)
    assert arbiter.refresh_step(key("gradient"), party.name, request) == answer
    with pytest.raises(ProtocolError, match="different request"):  # one per party and batch
        arbiter.refresh_step(key("gradient"), party.name, residual)
    party.update(key("update"), answer)
    once = party._enc
    party.update(key("update"), answer)
    assert party._enc == once


@pytest.mark.parametrize("suite_name", ["twin", "ckks"])
def test_checkpoint_then_resume_matches_an_uninterrupted_run(suite_name: str) -> None:
    suite = PLAIN_LR_SUITE if suite_name == "twin" else CKKS_LR_SUITE
    config = CONFIG.model_copy(update=dict(max_epochs=3 if suite_name == "twin" else 2))
    straight = build(suite, config)
    run_local(*straight)

    first = build(suite, config)
    run_local(*first, stop_after_epoch=0)
    saved = [first[0].state_dict(), *(f.state_dict() for f in first[1])]
    # fresh processes: new roles; the arbiter's key comes back from the coordinator's vault
    kept = Arbiter(JOB, suite=suite, secret=first[2].secret_bytes())
    resumed = build(suite, config, arbiter=kept)
    resumed[0].load_state_dict(saved[0])
    for party, state in zip(resumed[1], saved[1:], strict=True):
        party.load_state_dict(state)
    run = run_local(*resumed)
    assert [r.epoch for r in run.reports] == list(range(1, config.max_epochs))
    assert np.allclose(weights(resumed[0], resumed[1]), weights(straight[0], straight[1]),
                       atol=5e-6)
    assert [r.loss for r in resumed[0].history] == pytest.approx(
        [r.loss for r in straight[0].history], abs=1e-6)

    if suite_name == "ckks":  # the arbiter key is gone: refused, not silently retrained
        lost = build(suite, config)
        lost[0].load_state_dict(saved[0])
        with pytest.raises(ProtocolError, match="another arbiter key"):
            lost[0].open(lost[2].public_context())


def test_the_bank_learns_one_loss_scalar_per_epoch_not_rows() -> None:
    roles = build(CKKS_LR_SUITE, CONFIG.model_copy(update=dict(max_epochs=1)))
    label, features, arbiter = roles
    open_all(roles)
    he = arbiter._he
    for batch in range(label.n_batches):
        k = StepKey(JOB, 0, batch, "positions")
        positions = label.batch_positions(k)
        forwards = {f.name: f.forward(StepKey(JOB, 0, batch, "forward"), positions)
                    for f in features}
        residual = label.residual(StepKey(JOB, 0, batch, "residual"), forwards)
        for party in (label, *features):
            g = StepKey(JOB, 0, batch, "gradient")
            answer = arbiter.refresh_step(g, getattr(party, "name", "label"),
                                          party.gradient(g, residual))
            party.update(StepKey(JOB, 0, batch, "update"), answer)
    parts = {f.name: f.validation_logits(StepKey(JOB, 0, -1, "validate")) for f in features}
    request = label.loss_request(0, parts)
    seen = he.decrypt(request)[: label.validation.size]
    assert np.min(np.abs(seen)) > 1e6  # the arbiter sees logits only under 2^50-sized masks
    refreshed = arbiter.refresh_logits(StepKey(JOB, 0, -1, "loss"), "label", request)
    loss_request = label.loss_sum(refreshed)
    masked = unpack_frames(loss_request)[0]
    assert abs(he.decrypt(masked)[0]) > 1e9  # the loss sum is masked for the arbiter too
    loss = arbiter.reencrypt(StepKey(JOB, 0, -1, "loss_sum"), "label", loss_request)
    report = label.end_epoch(0, loss)
    assert 0.3 < report.loss < 0.7 and report.auc is None


def test_a_saved_party_model_carries_its_schema_and_old_files_are_read_or_refused() -> None:
    import json

    import pytest

    from common.errors import ModelFormatError
    from models.vlr.scoring import MODEL_SCHEMA, PartyModel

    model = PartyModel(party="core", role="feature", job="j", features=("a",),
                       weights=np.array([0.5, 0.1]), mean=np.zeros(1), scale=np.ones(1))
    saved = json.loads(model.to_json())
    assert saved["schema"] == MODEL_SCHEMA
    unversioned = {k: v for k, v in saved.items() if k not in ("schema", "kind")}
    assert PartyModel.from_json(json.dumps(unversioned)).features == ("a",)  # migrated as is
    with pytest.raises(ModelFormatError, match="retrain it"):
        PartyModel.from_json(json.dumps({**saved, "schema": 99}))
    with pytest.raises(ModelFormatError, match="not a fedcredit model"):
        PartyModel.from_json("\x80\x04pickle")


def test_a_feature_node_too_wide_for_the_rows_is_refused_by_the_bank() -> None:
    """Final weights are linear in the labels: 300 weights on 480 rows gave a node every label
    (tests/attacks/README.md), so the bank's floor asks for rows per weight."""
    label, _, arbiter = build(PLAIN_LR_SUITE)
    label.open(arbiter.public_context())
    label.check_widths({"f1": 4, "f2": 16})  # 480 training rows: 30 per weight
    with pytest.raises(ProtocolError, match=r"feature node f2 has 17 weights: 480 training rows "
                       r"are fewer than 30 per weight \(\[vlr\] min_rows_per_column = 30\)"):
        label.check_widths({"f1": 4, "f2": 17})

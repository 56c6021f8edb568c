"""Horizontal LR: the numpy model, DP accounting, the refusals, and SecAgg+ run in-process."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Error, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.common import FitIns, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.quantization import quantize
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.serverapp import Grid

from common.errors import ProtocolError
from fedcredit.hfl.client_app import app as client_app
from models.hfl.model import (
    HyperParams,
    init_weights,
    log_loss,
    prepare,
    train_epochs,
)
from models.hfl.server_app import SurvivingSecAggPlusWorkflow, build_strategy
from models.hfl.settings import JobSettings, epsilon_spent
from node.hfl_client import check_unmask_request
from tests.unit.models.flower_task import flower_task_identity

# the numpy model ----------------------------------------------------------------------------


def test_training_lowers_the_loss() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 3))
    y = (X @ np.array([1.5, -1.0, 0.5]) + rng.normal(size=400) > 0).astype(float)
    w0 = init_weights(3)

    w1 = train_epochs(w0, X, y, HyperParams(local_epochs=5, lr=0.3, batch_size=32), seed=0)

    assert log_loss(w1, X, y) < log_loss(w0, X, y) - 0.2


def test_full_batch_fedavg_step_equals_the_pooled_step() -> None:
    rng = np.random.default_rng(2)
    parts = [(rng.normal(size=(n, 4)), rng.integers(0, 2, n).astype(float)) for n in (50, 80, 30)]
    w = [rng.normal(size=4), np.array([0.2])]
    hp = HyperParams(local_epochs=1, lr=0.5, batch_size=0)

    local = [train_epochs(w, X, y, hp, seed=0) for X, y in parts]
    rows = np.array([len(y) for _, y in parts], dtype=float)
    fedavg = [sum(n * u[i] for n, u in zip(rows, local, strict=True)) / rows.sum()
              for i in range(2)]
    pooled = train_epochs(w, np.vstack([X for X, _ in parts]),
                          np.concatenate([y for _, y in parts]), hp, seed=0)

    for a, b in zip(fedavg, pooled, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_prepare_standardises_on_training_rows_and_imputes_the_mean() -> None:
    X = np.array([[1.0, np.nan]] * 5 + [[3.0, 2.0]] * 5)
    split = prepare(X, np.array([0, 1] * 5), holdout=0.3, seed=4)

    assert not np.isnan(split.X_train).any() and not np.isnan(split.X_test).any()
    assert abs(split.X_train[:, 0].mean()) < 1e-12


# DP and refusals ----------------------------------------------------------------------------


def test_epsilon_grows_with_rounds_and_shrinks_with_noise() -> None:
    one = epsilon_spent(1, 1.0, 1e-5)

    assert one == pytest.approx(0.5 + 2 * np.sqrt(0.5 * np.log(1e5)))
    assert epsilon_spent(4, 1.0, 1e-5) > one > epsilon_spent(1, 2.0, 1e-5)
    assert epsilon_spent(0, 1.0, 1e-5) == 0.0


def test_server_refuses_secure_aggregation_over_two_banks_without_dp() -> None:
    with pytest.raises(ProtocolError, match="2 banks"):
        JobSettings(banks=2, secagg=True).check()
    JobSettings(banks=2, secagg=True, dp_noise=1.0).check()  # DP on: allowed
    JobSettings(banks=3, secagg=True).check()


def test_run_config_is_read_with_types() -> None:
    settings = JobSettings.from_run_config({"rounds": 4, "secagg": "false", "lr": 1,
                                            "result-path": "/x.json", "unknown": 1})

    assert (settings.rounds, settings.secagg, settings.lr) == (4, False, 1.0)
    assert settings.result_path == "/x.json"


def test_unmask_guard_refuses_a_node_named_active_and_dropped() -> None:
    check_unmask_request(1, [1, 2], [3])  # a normal request passes
    with pytest.raises(ProtocolError, match="both active and dropped"):
        check_unmask_request(1, [1, 2, 3], [3])
    with pytest.raises(ProtocolError, match="this node dropped"):
        check_unmask_request(1, [2, 3], [1])


# SecAgg+ in one process: Flower's real workflow and mods, messages delivered directly ---------
@pytest.fixture(autouse=True)
def _task_identity() -> Iterator[None]:
    with flower_task_identity():
        yield


class LocalGrid(Grid):
    """Delivers each message to the ClientApp of its node; can drop or tamper with stages."""

    def __init__(self, contexts: dict[int, Context]) -> None:
        self.contexts = contexts
        self.dead_from: dict[int, str] = {}
        self.tamper_unmask = False
        self.client_errors: list[str] = []
        self.masked: dict[int, list[np.ndarray]] = {}
        self._stages = [Stage.SETUP, Stage.SHARE_KEYS, Stage.COLLECT_MASKED_VECTORS,
                        Stage.UNMASK]

    def set_run(self, run: Any) -> None:  # pragma: no cover - not used in-process
        pass

    @property
    def run(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def create_message(self, *args: Any, **kwargs: Any) -> Message:  # pragma: no cover
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def get_nodes(self) -> Iterable[Any]:  # pragma: no cover
        return []

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:  # pragma: no cover
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:  # pragma: no cover
        raise NotImplementedError

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        replies = []
        for original in messages:
            msg = copy.deepcopy(original)  # as if serialised: mods change what they receive
            nid = msg.metadata.dst_node_id
            stage = str(msg.content.config_records[RECORD_KEY_CONFIGS][Key.STAGE])
            dead = self.dead_from.get(nid)
            if dead is not None and self._stages.index(stage) >= self._stages.index(dead):
                continue  # the node is gone: no reply before the timeout
            if stage == Stage.UNMASK and self.tamper_unmask:
                configs = msg.content.config_records[RECORD_KEY_CONFIGS]
                active = list(configs[Key.ACTIVE_NODE_ID_LIST])  # type: ignore[arg-type]
                configs[Key.DEAD_NODE_ID_LIST] = [n for n in active if n != nid][:1]
            try:
                reply = client_app(msg, self.contexts[nid])
            except ProtocolError as err:
                self.client_errors.append(str(err))
                reply = Message(Error(code=0, reason=str(err)), reply_to=msg)
            if stage == Stage.COLLECT_MASKED_VECTORS and not reply.has_error():
                from flwr.common import bytes_to_ndarray

                raw = reply.content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]
                self.masked[nid] = [bytes_to_ndarray(b) for b in raw]  # type: ignore[union-attr]
            replies.append(reply)
        return replies


def _bank_files(folder: Path, sizes: tuple[int, ...] = (120, 90, 150)) -> list[Path]:
    rng = np.random.default_rng(5)
    paths = []
    for k, n in enumerate(sizes, start=1):
        X = rng.normal(size=(n, 3))
        y = (X[:, 0] - X[:, 1] + rng.normal(size=n) > 0).astype(int)
        path = folder / f"bank_{k}.csv"
        lines = ["id,default,x0,x1,x2"] + [f"{k}{i:05d},{y[i]},{X[i, 0]:.6f},{X[i, 1]:.6f},"
                                           f"{X[i, 2]:.6f}" for i in range(n)]
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


def _secagg_round(tmp_path: Path, *, dead_from: dict[int, str] | None = None,
                  tamper: bool = False) -> tuple[LegacyContext, LocalGrid, list[np.ndarray]]:
    capture = tmp_path / "capture"
    capture.mkdir(exist_ok=True)
    node_ids = [101, 202, 303]
    contexts = {
        nid: Context(run_id=1, node_id=nid, state=RecordDict(), run_config={},
                     node_config={"bank": f"bank-{k}", "table": str(path), "id-format": "any",
                                  "label-column": "default", "capture-dir": str(capture)})
        for k, (nid, path) in enumerate(zip(node_ids, _bank_files(tmp_path), strict=True), 1)
    }
    grid = LocalGrid(contexts)
    grid.dead_from = dead_from or {}
    grid.tamper_unmask = tamper
    settings = JobSettings(banks=3, features=3, lr=0.5, batch_size=0, max_weight=200.0)
    server = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    legacy = LegacyContext(server, ServerConfig(num_rounds=1), build_strategy(settings))
    for nid in node_ids:
        legacy.client_manager.register(GridClientProxy(node_id=nid, grid=grid, run_id=1))
    start = init_weights(3)
    legacy.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
        ndarrays_to_parameters(start), True)
    legacy.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord(
        {WorkflowKey.CURRENT_ROUND: 1, WorkflowKey.START_TIME: 0.0})

    SurvivingSecAggPlusWorkflow(num_shares=1.0, reconstruction_threshold=0.67,
                                max_weight=200.0)(grid, legacy)

    params = compat.arrayrecord_to_parameters(
        legacy.state.array_records[MAIN_PARAMS_RECORD], True)
    return legacy, grid, parameters_to_ndarrays(params)


def _captured(tmp_path: Path, node_ids: set[int]) -> list[dict[str, Any]]:
    found = [json.loads(p.read_text()) for p in (tmp_path / "capture").glob("bank-*.json")]
    return [c for c in found if c["node_id"] in node_ids]


def _weighted(captures: list[dict[str, Any]]) -> np.ndarray:
    rows = np.array([c["num_examples"] for c in captures], dtype=float)
    flat = np.array([np.concatenate([np.ravel(a) for a in c["weights"]]) for c in captures])
    return (rows[:, None] * flat).sum(axis=0) / rows.sum()


def test_secagg_aggregate_is_the_weighted_mean_and_masked_vectors_hide_updates(
        tmp_path: Path) -> None:
    _, grid, aggregate = _secagg_round(tmp_path)

    updates = _captured(tmp_path, set(grid.masked))
    assert len(updates) == 3
    np.testing.assert_allclose(np.concatenate(aggregate), _weighted(updates), atol=1e-5)
    for update in updates:  # no entry within rounding of what the bank would send unmasked
        masked = np.concatenate(grid.masked[update["node_id"]]).astype(float)
        flat = np.concatenate([np.ravel(a) for a in update["weights"]])
        q_ratio = round(update["num_examples"] / 200.0 * 2**22)
        plain = np.concatenate([[q_ratio], np.floor((flat * q_ratio / 2**22 + 8) * 2**22 / 16)])
        flower = np.concatenate([[q_ratio], *quantize([flat * q_ratio / 2**22], 8.0, 2**22)])
        assert np.all(np.abs(plain - flower) <= 1)  # our reading of the encoding is Flower's
        gap = np.abs(masked - plain)
        assert np.all(np.minimum(gap, 2**32 - gap) > 2)


def test_secagg_survives_one_bank_dropping_before_its_masked_vector(tmp_path: Path) -> None:
    _, grid, aggregate = _secagg_round(tmp_path,
                                       dead_from={303: Stage.COLLECT_MASKED_VECTORS})

    survivors = _captured(tmp_path, {101, 202})
    assert set(grid.masked) == {101, 202}
    np.testing.assert_allclose(np.concatenate(aggregate), _weighted(survivors), atol=1e-5)


@pytest.mark.parametrize("stage", [Stage.SETUP, Stage.SHARE_KEYS])
def test_secagg_survives_one_bank_dropping_before_it_shares_keys(tmp_path: Path,
                                                                 stage: str) -> None:
    _, grid, aggregate = _secagg_round(tmp_path, dead_from={303: stage})

    survivors = _captured(tmp_path, {101, 202})
    assert set(grid.masked) == {101, 202}
    np.testing.assert_allclose(np.concatenate(aggregate), _weighted(survivors), atol=1e-5)


def test_secagg_releases_nothing_when_the_threshold_fails(tmp_path: Path) -> None:
    _, _, aggregate = _secagg_round(
        tmp_path, dead_from={202: Stage.UNMASK, 303: Stage.UNMASK})

    np.testing.assert_array_equal(np.concatenate(aggregate), np.zeros(4))  # the start model


def test_guard_aborts_unmask_that_names_a_bank_active_and_dropped(tmp_path: Path) -> None:
    _, grid, aggregate = _secagg_round(tmp_path, tamper=True)

    assert len(grid.client_errors) == 3
    assert all("both active and dropped" in e for e in grid.client_errors)
    np.testing.assert_array_equal(np.concatenate(aggregate), np.zeros(4))


def test_a_bank_refuses_a_plain_update_when_it_requires_secagg(tmp_path: Path) -> None:
    path = _bank_files(tmp_path, (40,))[0]
    context = Context(run_id=1, node_id=7, state=RecordDict(), run_config={},
                      node_config={"table": str(path), "id-format": "any",
                                   "label-column": "default"})
    fitins = compat.fitins_to_recorddict(
        FitIns(ndarrays_to_parameters(init_weights(3)), {}), True)
    msg = Message(fitins, dst_node_id=7, message_type=MessageType.TRAIN, group_id="1")

    with pytest.raises(ProtocolError, match="requires secure aggregation"):
        client_app(msg, context)


# Flower keys ---------------------------------------------------------------------------------
def test_supernode_keys_are_p384_openssh_and_the_superlink_cert_chains_to_our_ca(
        tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        load_ssh_private_key,
        load_ssh_public_key,
    )

    from crypto.flower_keys import issue_server_certificate, mint_supernode_key
    from crypto.pki import init_pki, verify_peer_certificate

    key = mint_supernode_key(tmp_path / "keys", "bank-1")
    private = load_ssh_private_key(key.private_key.read_bytes(), password=None)
    public = load_ssh_public_key(key.public_key.read_bytes())
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert isinstance(private.curve, ec.SECP384R1)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.public_numbers() == private.public_key().public_numbers()
    assert key.private_key.stat().st_mode & 0o077 == 0

    layout = init_pki(tmp_path / "pki", ["bank-1"])
    cert, _ = issue_server_certificate(layout.directory, "superlink", hosts=["10.0.0.5"])
    verify_peer_certificate(layout.ca_cert.read_bytes(), cert.read_bytes(), "superlink")

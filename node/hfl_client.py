"""The bank's Flower ClientApp: local SGD on its own table, SecAgg+ masking, our unmask guard.

The SuperNode's ``--node-config`` names the bank's data, either its node TOML config
(``node-config="bank_1.toml"``) or a table file (``table="bank_1.csv" label-column="y"
id-format="any"``), plus ``bank="bank_1"``. ``require-secagg`` (default true) makes the bank refuse
to send a plain update: a training message that is not part of SecAgg+ is answered with an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from flwr.app import Context, Message
from flwr.app.message_type import MessageType
from flwr.client import Client, NumPyClient
from flwr.client.mod import fixedclipping_mod, secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import NDArrays, Scalar
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat

from common.errors import DataValidationError, ProtocolError
from models.hfl.model import (
    HyperParams,
    Split,
    log_loss,
    predict_proba,
    prepare,
    train_epochs,
)
from models.metrics import auc
from node.config import DataConfig, load_node_config
from node.datasource import load_table

CLIPPING_NORM_KEY = "clipping_norm"  # the key Flower's DP wrapper puts in the fit config


def load_bank_split(node_config: dict[str, Any], *, holdout: float, seed: int) -> Split:
    """Read the bank's table through the node data layer and split/standardise it locally."""
    cfg = data_config_from(node_config)
    table = load_table(cfg, "label").training_view()
    if table.y is None:
        raise DataValidationError(f"{table.source}: a bank's table needs a label column")
    return prepare(table.X, table.y, holdout=holdout, seed=seed)


def data_config_from(node_config: dict[str, Any]) -> DataConfig:
    """The bank's DataConfig from ``node-config=<toml>`` or ``table=<file>`` in --node-config."""
    if node_config.get("node-config"):
        return load_node_config(Path(str(node_config["node-config"]))).data
    table = node_config.get("table")
    if not table:
        raise DataValidationError(
            "the SuperNode's --node-config names no data: pass node-config=\"<bank.toml>\" or "
            "table=\"<file.csv>\" (with label-column, id-column, id-format)"
        )
    path = Path(str(table))
    source: Literal["csv", "parquet"] = "parquet" if path.suffix.lower() == ".parquet" else "csv"
    return DataConfig(
        source=source,
        path=path,
        id_column=str(node_config.get("id-column", "id")),
        label_column=str(node_config.get("label-column", "default")),
        id_format=cast(Any, str(node_config.get("id-format", "uscc"))),
    )


class BankClient(NumPyClient):
    """FedAvg participant: trains from the global model on its rows, evaluates on held-out rows."""

    def __init__(self, node_config: dict[str, Any], run_config: dict[str, Any]) -> None:
        self.node_config = node_config
        self.holdout = float(run_config.get("holdout", 0.2))
        self.seed = int(run_config.get("seed", 0))
        self._split: Split | None = None

    @property
    def split(self) -> Split:
        if self._split is None:
            self._split = load_bank_split(self.node_config, holdout=self.holdout, seed=self.seed)
        return self._split

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        hp = HyperParams(
            local_epochs=int(config.get("local-epochs", 1)),
            lr=float(config.get("lr", 0.1)),
            batch_size=int(config.get("batch-size", 64)),
            l2=float(config.get("l2", 0.0)),
        )
        round_seed = self.seed * 100_003 + int(config.get("round", 0))
        weights = [np.asarray(a, dtype=np.float64) for a in parameters]
        split = self.split
        updated = train_epochs(weights, split.X_train, split.y_train, hp, seed=round_seed)
        return list(updated), len(split.y_train), {}

    def evaluate(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, int, dict[str, Scalar]]:
        weights = [np.asarray(a, dtype=np.float64) for a in parameters]
        split = self.split
        scores = predict_proba(weights, split.X_test)
        return (log_loss(weights, split.X_test, split.y_test), len(split.y_test),
                {"auc": auc(split.y_test, scores, undefined=0.5)})


def client_fn(context: Context) -> Client:
    """A BankClient for this SuperNode's table."""
    return BankClient(dict(context.node_config), dict(context.run_config)).to_client()


# mods (outermost first) ---------------------------------------------------------------------
def check_unmask_request(own_node_id: int, active: list[int], dead: list[int]) -> None:
    """Refuse an unmask request that would let the server unmask one bank's own vector.

    Naming a bank both active (mask seed share wanted) and dropped (pairwise-key share wanted)
    hands the server both secrets of that bank; Flower's client answers such a request as is.
    """
    if len(set(active)) != len(active) or len(set(dead)) != len(dead):
        raise ProtocolError("SecAgg+ unmask request names a node twice in one list; aborting")
    both = set(active) & set(dead)
    if both:
        raise ProtocolError(
            f"SecAgg+ unmask request names {len(both)} node(s) both active and dropped; this "
            "would reveal their individual updates to the server, aborting"
        )
    if own_node_id in dead:
        raise ProtocolError("SecAgg+ unmask request calls this node dropped while it answers; "
                            "aborting")


def unmask_guard_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Our client-side check of the SecAgg+ unmask stage (see check_unmask_request)."""
    if msg.metadata.message_type == MessageType.TRAIN:
        configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
        if configs is not None and configs.get(Key.STAGE) == Stage.UNMASK:
            active, dead = configs.get(Key.ACTIVE_NODE_ID_LIST), configs.get(Key.DEAD_NODE_ID_LIST)
            if not isinstance(active, list) or not isinstance(dead, list):
                raise ProtocolError("SecAgg+ unmask request without node lists; aborting")
            check_unmask_request(msg.metadata.dst_node_id, cast(list[int], active),
                                 cast(list[int], dead))
    return call_next(msg, ctxt)


def secagg_policy_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """SecAgg+ for SecAgg+ messages; a plain training message only if the bank allows it."""
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, ctxt)
    if RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, ctxt, call_next)
    if _flag(ctxt.node_config.get("require-secagg", True)):
        raise ProtocolError("this bank requires secure aggregation and refuses to send a plain "
                            "model update (set require-secagg=false in its --node-config)")
    return call_next(msg, ctxt)


def dp_clip_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Flower's fixed clipping of the update when the server runs central DP, else nothing."""
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, ctxt)
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    if CLIPPING_NORM_KEY in fitins.config:
        return fixedclipping_mod(msg, ctxt, call_next)
    return call_next(msg, ctxt)


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


app = ClientApp(
    client_fn=client_fn,
    mods=[unmask_guard_mod, secagg_policy_mod, dp_clip_mod],
)

"""The local federation's tools: its ClientApp and ServerApp add timing and capture, the bank's and
the coordinator's do not; the app folder it submits names them; a job file's errors name fields."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.clientapp import ClientApp
from flwr.common import FitIns, ndarray_to_bytes, ndarrays_to_parameters
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat

from common.errors import DataValidationError
from fedcredit.hfl.client_app import TIMING_RECORD
from fedcredit.hfl.client_app import app as launcher_app
from fedcredit.hfl.federation import CLIENT_APP, SERVER_APP, Federation
from fedcredit.hfl.job import BankSpec, load_job
from fedcredit.hfl.server_app import MaskedCapture, read_timing
from models.hfl import recording
from models.hfl import server_app as production_server_app
from models.hfl.model import init_weights
from models.hfl.recording import StageLog
from node.hfl_client import app as bank_app
from tests.unit.models.flower_task import flower_task_identity


@pytest.fixture(autouse=True)
def _task_identity() -> Iterator[None]:
    with flower_task_identity():
        yield


def _plain_round(tmp_path: Path, app: ClientApp) -> Message:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    table = tmp_path / "bank.csv"
    table.write_text("id,default,x0,x1,x2\n" + "".join(
        f"{i},{y[i]},{x[i, 0]:.5f},{x[i, 1]:.5f},{x[i, 2]:.5f}\n" for i in range(40)))
    context = Context(run_id=1, node_id=7, state=RecordDict(), run_config={}, node_config={
        "bank": "bank-1", "table": str(table), "id-format": "any", "label-column": "default",
        "require-secagg": False, "capture-dir": str(tmp_path / "capture")})
    (tmp_path / "capture").mkdir(exist_ok=True)
    fitins = compat.fitins_to_recorddict(
        FitIns(ndarrays_to_parameters(init_weights(3)), {"lr": 0.1}), True)
    return app(Message(fitins, dst_node_id=7, message_type=MessageType.TRAIN, group_id="1"),
               context)


def test_the_banks_clientapp_sends_no_timing_and_keeps_no_capture(tmp_path: Path) -> None:
    reply = _plain_round(tmp_path, bank_app)

    assert not reply.has_error()
    assert TIMING_RECORD not in reply.content.config_records
    assert list((tmp_path / "capture").iterdir()) == []


def test_the_launchers_clientapp_adds_timing_and_test_capture(tmp_path: Path) -> None:
    reply = _plain_round(tmp_path, launcher_app)

    assert not reply.has_error()
    timing = reply.content.config_records[TIMING_RECORD]
    assert float(timing["compute-s"]) >= 0.0  # type: ignore[arg-type]
    assert [p.name for p in (tmp_path / "capture").iterdir()] == ["bank-1-round1.json"]


def test_the_launchers_serverapp_reads_timing_and_captures_masked_vectors(
        tmp_path: Path) -> None:
    masked = [np.arange(4, dtype=np.int64)]
    reply = Message(RecordDict({
        TIMING_RECORD: ConfigRecord({"compute-s": 1.5, "startup-s": 0.25}),
        RECORD_KEY_CONFIGS: ConfigRecord({Key.MASKED_PARAMETERS: [ndarray_to_bytes(masked[0])]}),
    }), dst_node_id=0, message_type=MessageType.TRAIN, group_id="2")
    log = StageLog(round=2, stage=Stage.COLLECT_MASKED_VECTORS, sent=1)

    read_timing(log, reply)
    MaskedCapture(tmp_path)(log, reply)

    assert (log.compute_s, log.startup_s) == (1.5, 0.25)
    [path] = tmp_path.glob("masked-*-round2.json")
    assert json.loads(path.read_text())["masked"] == [[0, 1, 2, 3]]


def test_the_coordinators_serverapp_has_no_test_hooks() -> None:
    source = Path(production_server_app.__file__).read_text() + Path(recording.__file__).read_text()

    assert "capture" not in source.lower() and TIMING_RECORD not in source


def test_the_submitted_app_runs_the_launchers_clientapp(tmp_path: Path) -> None:
    fed = Federation(tmp_path, [BankSpec(name="bank-1", table=tmp_path / "b.csv"),
                                BankSpec(name="bank-2", table=tmp_path / "c.csv")])

    manifest = tomllib.loads((fed._app_dir() / "pyproject.toml").read_text())

    components = manifest["tool"]["flwr"]["app"]["components"]
    assert components == {"serverapp": SERVER_APP, "clientapp": CLIENT_APP}
    assert manifest["tool"]["flwr"]["app"]["config"]["capture-dir"] == ""


def test_a_bad_job_file_names_every_bad_field(tmp_path: Path) -> None:
    path = tmp_path / "hfl.toml"
    path.write_text('rounds = 0\nlr = -1\n[[banks]]\nname = "Bank 1"\ntable = "b.csv"\n')

    with pytest.raises(DataValidationError) as raised:
        load_job(path)

    message = str(raised.value)
    assert str(path) in message
    assert all(field in message for field in ("rounds:", "lr:", "banks.0.name:"))

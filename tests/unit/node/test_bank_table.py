"""The bank scorer's own rows follow its live table: whole snapshots, bad ones refused."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from common.uscc import generate_uscc
from node.config import NodeConfig
from node.scoring.bank_table import FollowsTable
from node.state import NodeState


def _write(path: Path, ids: list[str], values: list[str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("id,x,line_basis,default\n" + "".join(
        f"{i},{v},{k + 1},{k % 2}\n" for k, (i, v) in enumerate(zip(ids, values, strict=True))))
    os.replace(tmp, path)


def _config(tmp_path: Path, refresh: float) -> NodeConfig:
    return NodeConfig.model_validate({
        "party": "bank", "role": "label", "coordinator": "127.0.0.1:1",
        "tls": {"ca": "ca", "cert": "c", "key": "k"}, "state_dir": str(tmp_path / "state"),
        "data": {"source": "csv", "path": str(tmp_path / "bank.csv"), "label_column": "default",
                 "refresh_seconds": refresh}})


def test_new_rows_are_used_whole_and_a_bad_table_is_refused(tmp_path: Path) -> None:
    ids = generate_uscc(np.random.default_rng(1), 3)
    _write(tmp_path / "bank.csv", ids, ["1", "2", "3"])
    holder = FollowsTable()
    holder.follow_table(_config(tmp_path, 0.1), None, ["x"], "line_basis", "model m")
    try:
        first = holder.view
        assert first.own[:, 0].tolist() == [1.0, 2.0, 3.0] and first.version.startswith("v1-")
        _write(tmp_path / "bank.csv", ids, ["10", "20", "30"])
        deadline = time.monotonic() + 10
        while holder.view is first:  # the follower thread swaps in the new rows, whole
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = holder.view
        assert second.own[:, 0].tolist() == [10.0, 20.0, 30.0]
        assert second.version.startswith("v2-") and second.row_of == first.row_of
        assert first.own[:, 0].tolist() == [1.0, 2.0, 3.0]  # a request that took it keeps it
        _write(tmp_path / "bank.csv", ids, ["10", "oops", "30"])
        time.sleep(0.5)
        assert holder.reload_table(force=True) == second.version  # refused: still the last good
        assert holder.view is second
    finally:
        holder.stop_following()


def test_a_given_table_is_fixed(tmp_path: Path) -> None:
    ids = generate_uscc(np.random.default_rng(2), 2)
    _write(tmp_path / "bank.csv", ids, ["1", "2"])
    from node.datasource import load_table

    config = _config(tmp_path, 0.1)
    holder = FollowsTable()
    holder.follow_table(config, load_table(config.data, "label"), ["x"], "line_basis", "m")
    _write(tmp_path / "bank.csv", ids, ["5", "6"])
    assert holder.reload_table(force=True) == holder.view.version
    assert holder.own[:, 0].tolist() == [1.0, 2.0]


def test_the_bank_node_and_its_scorer_give_one_content_one_version(tmp_path: Path) -> None:
    ids = generate_uscc(np.random.default_rng(3), 3)
    bank_csv = tmp_path / "bank.csv"
    config = _config(tmp_path, 0)  # no schedule: reloads happen when asked
    _write(bank_csv, ids, ["1", "2", "3"])
    node = NodeState.from_config(config, insecure=True)
    original = node.snapshot().version
    _write(bank_csv, ids, ["4", "5", "6"])
    assert node.live.reload(force=True).outcome == "loaded"  # the node has loaded twice
    holder = FollowsTable()  # the decision service starts now, on the same state directory
    holder.follow_table(config, None, ["x"], "line_basis", "model m")
    try:
        assert holder.version == node.snapshot().version
        assert holder.version.startswith("v2-")
        for values in (["7", "8", "9"], ["1", "2", "3"]):  # new content, then the first again
            _write(bank_csv, ids, values)
            node.live.reload(force=True)
            assert holder.reload_table(force=True) == node.snapshot().version
        assert holder.version == original  # a version names content, whoever loaded it
        restarted = NodeState.from_config(config, insecure=True)
        assert restarted.snapshot().version == original
    finally:
        holder.stop_following()

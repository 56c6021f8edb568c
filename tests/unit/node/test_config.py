"""Node config: TOML loading, env overrides, path resolution and the errors it reports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from common.errors import DataValidationError
from node.config import (
    ENV_PREFIX,
    DataConfig,
    NodeConfig,
    TlsConfig,
    load_node_config,
    write_node_config,
)


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start with no FEDCREDIT_NODE_* variables from the calling shell."""
    import os

    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def _config(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "party": "bank-a",
        "role": "label",
        "coordinator": "coord.example:50050",
        "state_dir": "state",
        "tls": {"ca": "pki/ca.crt", "cert": "pki/bank-a.crt", "key": "pki/bank-a.key"},
        "data": {"source": "csv", "path": "data/bank.csv", "label_column": "default"},
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            merged = {**config[key], **value}
            config[key] = {k: v for k, v in merged.items() if v is not None}
        elif value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def _write(folder: Path, config: dict[str, Any]) -> Path:
    path = folder / "node.toml"
    path.write_text(tomli_w.dumps(config))
    return path


def test_loads_a_label_node_and_resolves_relative_paths_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = _write(folder, _config())
    monkeypatch.chdir(tmp_path)  # the working directory must not matter

    cfg = load_node_config(Path("etc/node.toml"))

    assert cfg.party == "bank-a" and cfg.role == "label"
    assert cfg.listen == "127.0.0.1:50051"
    assert cfg.advertise is None and cfg.advertise_address == cfg.listen
    assert cfg.tls.ca == folder.absolute() / "pki/ca.crt"
    assert cfg.tls.key == folder.absolute() / "pki/bank-a.key"
    assert cfg.state_dir == folder.absolute() / "state"
    assert cfg.data.path == folder.absolute() / "data/bank.csv"
    assert cfg.data.base_dir == path.parent.absolute()
    assert cfg.data.id_column == "id" and cfg.data.id_format == "uscc"
    assert cfg.data.features is None


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    path = _write(tmp_path, _config(tls={"ca": "/etc/fedcredit/ca.crt"}, state_dir="/var/fc"))

    cfg = load_node_config(path)

    assert cfg.tls.ca == Path("/etc/fedcredit/ca.crt")
    assert cfg.state_dir == Path("/var/fc")


def test_sql_source_database_is_resolved_too(tmp_path: Path) -> None:
    data = {"source": "sql", "query": "SELECT * FROM loans", "database": "bank.duckdb"}
    path = _write(tmp_path, {**_config(), "data": {**data, "label_column": "default"}})

    cfg = load_node_config(path)

    assert cfg.data.database == tmp_path.absolute() / "bank.duckdb"
    assert cfg.data.path is None


def test_env_overrides_top_level_and_nested_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, _config(listen="127.0.0.1:6000"))
    monkeypatch.setenv("FEDCREDIT_NODE_LISTEN", "0.0.0.0:7000")
    monkeypatch.setenv("FEDCREDIT_NODE_DATA__ID_FORMAT", "any")
    monkeypatch.setenv("FEDCREDIT_NODE_TLS__CA", "/etc/fedcredit/ca.crt")

    cfg = load_node_config(path)

    assert cfg.listen == "0.0.0.0:7000"
    assert cfg.data.id_format == "any"
    assert cfg.data.label_column == "default"  # the rest of [data] still comes from the file
    assert cfg.tls.ca == Path("/etc/fedcredit/ca.crt")
    assert cfg.tls.key == tmp_path.absolute() / "pki/bank-a.key"  # the rest of [tls] too


def test_invalid_env_override_is_reported_with_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, _config())
    monkeypatch.setenv("FEDCREDIT_NODE_LISTEN", "nowhere")

    with pytest.raises(DataValidationError) as caught:
        load_node_config(path)

    message = str(caught.value)
    assert str(path) in message and "listen" in message and "host:port" in message
    assert "FEDCREDIT_NODE_LISTEN" in message


def test_label_column_is_refused_for_a_feature_node(tmp_path: Path) -> None:
    path = _write(tmp_path, _config(party="logistics", role="feature"))

    with pytest.raises(DataValidationError) as caught:
        load_node_config(path)

    message = str(caught.value)
    assert str(path) in message
    assert "data.label_column" in message and "role = 'feature'" in message


def test_label_column_is_required_for_a_label_node(tmp_path: Path) -> None:
    path = _write(tmp_path, _config(data={"label_column": None}))

    with pytest.raises(DataValidationError, match=r"data\.label_column is required"):
        load_node_config(path)


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"party": "Bank_A"}, "party", "invalid party name 'Bank_A'"),
        ({"party": "x" * 64}, "party", "1-63 lowercase letters"),
        ({"role": "arbiter"}, "role", "'label' or 'feature'"),
        ({"coordinator": "coord.example"}, "coordinator", "host:port"),
        ({"advertise": "10.0.0.5:70000"}, "advertise", "port 1-65535"),
        ({"tls": {"ca": None}}, "tls.ca", "Field required"),
        ({"colour": "blue"}, "colour", "unknown key (a typo?)"),
        ({"data": {"source": "excel"}}, "data.source", "'csv', 'parquet' or 'sql'"),
        ({"data": {"id_format": "lei"}}, "data.id_format", "'uscc' or 'any'"),
        ({"data": {"path": None}}, "data", "data.path is required"),
        ({"data": {"query": "SELECT 1"}}, "data", "data.query and data.database are for"),
        ({"data": {"features": []}}, "data.features", "at least one column"),
        ({"data": {"features": ["a", "a"]}}, "data.features", "more than once: a"),
        ({"data": {"features": ["id", "a"]}}, "data", "must not contain the id column"),
        ({"data": {"features": ["default"]}}, "data", "must not contain the label column"),
        ({"data": {"id_column": "default"}}, "data", "must differ"),
    ],
)
def test_invalid_config_names_the_file_and_the_field(
    tmp_path: Path, changes: dict[str, Any], field: str, expected: str
) -> None:
    path = _write(tmp_path, _config(**changes))

    with pytest.raises(DataValidationError) as caught:
        load_node_config(path)

    message = str(caught.value)
    assert f"node config {path}" in message
    assert f"- {field}: " in message
    assert expected in message


def test_several_invalid_fields_are_reported_together(tmp_path: Path) -> None:
    path = _write(tmp_path, _config(party="Bad Name", listen="x", role="owner"))

    with pytest.raises(DataValidationError) as caught:
        load_node_config(path)

    message = str(caught.value)
    assert "3 invalid field(s)" in message
    assert "- party: " in message and "- listen: " in message and "- role: " in message


def test_sql_source_needs_a_query_and_no_path(tmp_path: Path) -> None:
    data = {"source": "sql", "path": "x.csv", "label_column": "default"}
    path = _write(tmp_path, {**_config(), "data": data})

    with pytest.raises(DataValidationError, match=r"data\.query is required"):
        load_node_config(path)


def test_missing_file_and_broken_toml_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="file not found"):
        load_node_config(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text('party = "bank-a\n')

    with pytest.raises(DataValidationError, match=rf"{re.escape(str(broken))}: not valid TOML"):
        load_node_config(broken)


def test_listen_may_use_port_zero_but_the_coordinator_may_not(tmp_path: Path) -> None:
    assert load_node_config(_write(tmp_path, _config(listen="127.0.0.1:0"))).listen.endswith(":0")

    with pytest.raises(DataValidationError, match="coordinator"):
        load_node_config(_write(tmp_path, _config(coordinator="127.0.0.1:0")))


def test_ipv6_addresses_in_brackets(tmp_path: Path) -> None:
    cfg = load_node_config(_write(tmp_path, _config(listen="[::1]:6000", advertise="[::1]:6000")))

    assert cfg.advertise_address == "[::1]:6000"


def test_write_then_load_round_trips_with_relative_paths(tmp_path: Path) -> None:
    folder = tmp_path / "demo" / "config"
    cfg = NodeConfig(
        party="tax-platform",
        role="feature",
        listen="127.0.0.1:6001",
        coordinator="127.0.0.1:6000",
        tls=TlsConfig(ca=folder / "pki/ca.crt", cert=folder / "pki/t.crt", key=Path("/k/t.key")),
        state_dir=folder / "state",
        data=DataConfig(source="parquet", path=folder / "tax.parquet", features=["a", "b"]),
    )

    write_node_config(cfg, folder / "tax.toml")
    text = (folder / "tax.toml").read_text()
    loaded = load_node_config(folder / "tax.toml")

    assert 'ca = "pki/ca.crt"' in text and 'key = "/k/t.key"' in text
    assert "advertise" not in text and "base_dir" not in text and "query" not in text
    assert loaded.model_dump(exclude={"data": {"base_dir"}}) == cfg.model_dump(
        exclude={"data": {"base_dir"}}
    )


def test_keyword_arguments_win_over_env_when_built_in_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEDCREDIT_NODE_LISTEN", "0.0.0.0:9999")
    base = _config()
    base["listen"] = "127.0.0.1:1234"

    assert NodeConfig(**base).listen == "127.0.0.1:1234"


@settings(max_examples=60)
@given(st.text(alphabet="abcz09-_AZ. é", min_size=0, max_size=70))
def test_party_names_are_lowercase_slugs(name: str) -> None:
    expected_ok = re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", name) is not None
    try:
        NodeConfig(**_config(party=name))
    except ValidationError as err:
        assert not expected_ok, err
    else:
        assert expected_ok

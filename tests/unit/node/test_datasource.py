"""The node's table: reading CSV, Parquet and SQL, and refusing bad data with every problem."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import DataValidationError
from common.uscc import ALPHABET, generate_uscc
from node.config import DataConfig
from node.datasource import NodeTable, load_table
from node.findings import MAX_LISTED, TableValidationError

IDS = generate_uscc(np.random.default_rng(7), 8)
BAD_CHECK = IDS[1][:17] + next(c for c in ALPHABET if c != IDS[1][17])
WS = " \t\n\r\x0b\x0c"


def _csv(folder: Path, text: str, name: str = "bank.csv") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _load_csv(folder: Path, text: str, **data: Any) -> NodeTable:
    path = _csv(folder, text)
    return load_table(
        DataConfig(source="csv", path=path, **data),
        "label" if "label_column" in data else "feature",
    )


def _refusal(folder: Path, text: str, **data: Any) -> TableValidationError:
    with pytest.raises(TableValidationError) as caught:
        _load_csv(folder, text, **data)
    return caught.value


def test_valid_csv_label_node(tmp_path: Path) -> None:
    text = (
        "id,default,x1,x2,x3\n"
        f"{IDS[0]},0,1.5,NA,-2\n"
        f" {IDS[1]} ,1,,3e2, 4 \n"
        f"{IDS[2]},1,-0.25,null,NaN\n"
    )

    table = _load_csv(tmp_path, text, label_column="default")

    assert table.ids == IDS[:3]  # stripped
    assert table.features == ["x1", "x2", "x3"]  # every column but id and label
    np.testing.assert_array_equal(
        table.X, [[1.5, np.nan, -2.0], [np.nan, 300.0, 4.0], [-0.25, np.nan, np.nan]]
    )
    assert table.X.dtype == np.float64 and not table.X.flags.writeable
    assert table.y is not None and table.y.dtype == np.int8
    assert table.y.tolist() == [0, 1, 1]
    assert table.rows == 3 and table.source == str(tmp_path / "bank.csv")
    assert table.schema() == [("x1", "float64"), ("x2", "float64"), ("x3", "float64")]
    summary = table.describe()
    assert summary.rows == 3 and summary.features == ("x1", "x2", "x3") and summary.has_label
    assert summary.missing_share == pytest.approx((1 / 3, 2 / 3, 1 / 3))
    assert table.missing_shares() == pytest.approx([1 / 3, 2 / 3, 1 / 3])


def test_feature_node_reads_only_declared_features(tmp_path: Path) -> None:
    text = f"name,id,orders,late\nacme,{IDS[0]},3,0.5\nbeta,{IDS[1]},4,0.25\n"

    table = _load_csv(tmp_path, text, features=["late", "orders"])

    assert table.features == ["late", "orders"] and table.y is None
    np.testing.assert_array_equal(table.X, [[0.5, 3.0], [0.25, 4.0]])
    assert not table.describe().has_label


@pytest.mark.parametrize(
    ("body", "row", "column", "expected"),
    [
        (f"{BAD_CHECK},0,1", 2, "id", f"got '{BAD_CHECK}', expected a USCC"),
        (f"{BAD_CHECK},0,1", 2, "id", f"check character '{BAD_CHECK[17]}' expected"),
        (f"{IDS[1][:17]},0,1", 2, "id", "wrong length 17 (expected 18)"),
        (f"{IDS[1].lower()},0,1", 2, "id", "not in the alphabet"),
        (",0,1", 2, "id", "empty id"),
        (f"{IDS[1]},2,1", 2, "default", "got '2', expected 0 or 1"),
        (f"{IDS[1]},yes,1", 2, "default", "got 'yes', expected 0 or 1"),
        (f"{IDS[1]},NA,1", 2, "default", "got 'NA', expected 0 or 1"),
        (f"{IDS[1]},1,n/a", 2, "x1", "got 'n/a', expected a number"),
        (f"{IDS[1]},1,inf", 2, "x1", "got 'inf', expected a number"),
        (f"{IDS[1]},1,1e999", 2, "x1", "got '1e999', expected a number"),
        (f'{IDS[1]},1,"1,5"', 2, "x1", "got '1,5', expected a number"),
        (f"{IDS[1]},1,1_000", 2, "x1", "got '1_000', expected a number"),
    ],
)
def test_each_problem_names_file_row_line_column_value_and_expected_form(
    tmp_path: Path, body: str, row: int, column: str, expected: str
) -> None:
    text = f"id,default,x1\n{IDS[0]},0,1\n{body}\n"

    err = _refusal(tmp_path, text, label_column="default")

    message = str(err)
    assert message.startswith(f"{tmp_path / 'bank.csv'}: 1 problem(s)")
    assert f"row {row} (line {row + 1}), column '{column}': " in message
    assert expected in message
    assert err.total == 1 and err.problems[0].column == column and err.problems[0].rows == (row,)


def test_any_id_format_rules(tmp_path: Path) -> None:
    text = f"id,x\nshort-id,1\n{'a' * 129},2\nbell\x07,3\n{'b' * 128},4\n"

    err = _refusal(tmp_path, text, id_format="any")

    message = str(err)
    assert err.total == 2
    assert "row 2 (line 3), column 'id': got 'aaaa" in message
    assert (
        "row 3 (line 4), column 'id': got 'bell\\x07', expected a non-empty id of at most 128"
        in (message)
    )


def test_duplicate_ids_name_every_row(tmp_path: Path) -> None:
    text = f"id,x\n{IDS[0]},1\n{IDS[1]},2\n{IDS[0]},3\n{IDS[2]},4\n {IDS[0]},5\n{IDS[2]},6\n"

    err = _refusal(tmp_path, text)

    message = str(err)
    assert err.total == 2
    assert (
        "row 1 (line 2), row 3 (line 4), row 5 (line 6), column 'id': duplicate id: the same id "
        "appears in 3 rows; ids must be unique"
    ) in message
    assert "row 4 (line 5), row 6 (line 7), column 'id': duplicate id" in message
    assert IDS[0] not in message  # duplicate ids are named by rows, not by value


def test_many_duplicates_are_capped(tmp_path: Path) -> None:
    codes = generate_uscc(np.random.default_rng(5), 12)
    rows = [IDS[0]] * 12 + [code for code in codes for _ in range(2)]
    text = "id,x\n" + "".join(f"{code},1\n" for code in rows)

    err = _refusal(tmp_path, text)

    message = str(err)
    assert err.total == 13
    assert "duplicate id: the same id appears in 12 rows (first 10 listed)" in message
    assert "row 10 (line 11), column 'id'" in message and "row 11 (" not in message
    assert "... and 3 more duplicated ids" in message


def test_missing_columns_list_the_columns_found(tmp_path: Path) -> None:
    text = f"ID,x1,y\n{IDS[0]},1,0\n"

    err = _refusal(tmp_path, text, label_column="default", features=["x1", "x9"])

    message = str(err)
    assert "missing column(s) 'id' (data.id_column), 'default' (data.label_column), " in message
    assert "'x9' (data.features); columns found: 'ID', 'x1', 'y'" in message


def test_empty_table_is_refused(tmp_path: Path) -> None:
    err = _refusal(tmp_path, "id,default,x1\n", label_column="default")

    assert "the table has no data rows" in str(err) and err.total == 1


def test_feature_column_entirely_missing(tmp_path: Path) -> None:
    text = f"id,x1,x2\n{IDS[0]},1,\n{IDS[1]},2,NA\n"

    err = _refusal(tmp_path, text)

    assert "column 'x2': every value is missing" in str(err) and err.total == 1


def test_rows_without_a_label_are_applicants_kept_out_of_the_training_view(
    tmp_path: Path,
) -> None:
    text = f"id,default,x1\n{IDS[0]},0,1\n{IDS[1]},,2\n{IDS[2]}, ,3\n{IDS[3]},1,4\n"

    table = _load_csv(tmp_path, text, label_column="default")

    assert table.rows == 4 and table.unlabelled_rows == 2
    assert table.y is not None and table.y.tolist() == [0, -1, -1, 1]
    assert table.describe().unlabelled_rows == 2
    view = table.training_view()
    assert view.ids == [IDS[0], IDS[3]] and view.X[:, 0].tolist() == [1.0, 4.0]
    assert view.y is not None and view.y.tolist() == [0, 1] and view.unlabelled_rows == 0


def test_parquet_null_label_is_an_applicant(tmp_path: Path) -> None:
    path = _parquet(tmp_path, {"id": pa.array(["a", "b"]),
                               "default": pa.array([1, None], pa.int8()),
                               "x1": pa.array([1.0, 2.0])})
    table = load_table(DataConfig(source="parquet", path=path, label_column="default",
                                  id_format="any"), "label")
    assert table.y is not None and table.y.tolist() == [1, -1]
    assert table.training_view().ids == ["a"]


def test_every_problem_is_listed_together(tmp_path: Path) -> None:
    text = (
        f"id,default,x1,x2\n{IDS[0]},7,1,2\n{IDS[1]},0,oops,2\n{IDS[1]},1,1,\n{BAD_CHECK},1,1,abc\n"
    )

    err = _refusal(tmp_path, text, label_column="default")

    message = str(err)
    assert "5 problem(s)" in message and err.total == 5
    assert "row 1 (line 2), column 'default': got '7'" in message
    assert "row 2 (line 3), column 'x1': got 'oops'" in message
    assert "row 4 (line 5), column 'x2': got 'abc'" in message
    assert "row 4 (line 5), column 'id': got '" in message
    assert "row 2 (line 3), row 3 (line 4), column 'id': duplicate id" in message


def test_long_listings_are_capped_and_counted(tmp_path: Path) -> None:
    rows = [f"{code},2,x,y" for code in generate_uscc(np.random.default_rng(3), 300)]
    text = "id,default,x1,x2\n" + "\n".join(rows) + "\n"

    err = _refusal(tmp_path, text, label_column="default")

    message = str(err)
    assert err.total == 900  # 300 bad labels, 300 + 300 bad features
    assert "900 problem(s)" in message
    assert len(err.problems) <= MAX_LISTED
    assert "... and 290 more rows with a bad label" in message
    assert message.count("\n  - ") <= MAX_LISTED


def test_line_numbers_follow_blank_lines_quoted_newlines_and_crlf(tmp_path: Path) -> None:
    text = (
        f'id,note,x\r\n{IDS[0]},plain,1\r\n\r\n{IDS[1]},"two\r\nlines",2\r\n{IDS[2]},after,bad\r\n'
    )

    err = _refusal(tmp_path, text, features=["x"])

    assert "row 3 (line 6), column 'x': got 'bad'" in str(err)


def test_gzipped_csv_line_numbers(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "bank.csv.gz"
    path.write_bytes(gzip.compress(f"id,x\n{IDS[0]},1\n\n{IDS[1]},zz\n".encode()))

    with pytest.raises(TableValidationError, match=r"row 2 \(line 4\), column 'x'"):
        load_table(DataConfig(source="csv", path=path), "feature")


def test_unreadable_source_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.csv"

    with pytest.raises(DataValidationError, match=f"{path}: cannot read the table"):
        load_table(DataConfig(source="csv", path=path), "feature")


def _parquet(folder: Path, columns: dict[str, Any], name: str = "t.parquet") -> Path:
    path = folder / name
    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_with_native_types(tmp_path: Path) -> None:
    path = _parquet(
        tmp_path,
        {
            "id": pa.array([101, 102, 103], pa.int64()),
            "default": pa.array([True, False, True]),
            "x1": pa.array([1.5, float("nan"), None], pa.float64()),
            "x2": pa.array([1, 2, 3], pa.int32()),
            "x3": pa.array(["4", " NA", "5e-1"]),
        },
    )
    cfg = DataConfig(source="parquet", path=path, label_column="default", id_format="any")

    table = load_table(cfg, "label")

    assert table.ids == ["101", "102", "103"]
    assert table.y is not None and table.y.tolist() == [1, 0, 1]
    np.testing.assert_array_equal(
        table.X, [[1.5, 1.0, 4.0], [np.nan, 2.0, np.nan], [np.nan, 3.0, 0.5]]
    )


def test_parquet_problems_name_row_and_column(tmp_path: Path) -> None:
    path = _parquet(
        tmp_path,
        {
            "id": pa.array(["a", "b", "c"]),
            "default": pa.array([0, 2, 1], pa.int8()),
            "x1": pa.array([1.0, float("inf"), 3.0]),
            "when": pa.array([1, 2, 3], pa.date32()),
        },
    )
    cfg = DataConfig(source="parquet", path=path, label_column="default", id_format="any")

    with pytest.raises(TableValidationError) as caught:
        load_table(cfg, "label")

    message = str(caught.value)
    assert message.startswith(f"{path}: 3 problem(s)")
    assert "column 'when': has type DATE, expected numbers or text" in message
    assert "(list data.features to leave it out)" in message
    assert "row 2, column 'default': got '2', expected 0 or 1" in message
    assert "row 2, column 'x1': got 'inf', expected a number" in message


def test_float_ids_are_refused(tmp_path: Path) -> None:
    path = _parquet(tmp_path, {"id": pa.array([1.0, 2.0]), "x": pa.array([1.0, 2.0])})

    with pytest.raises(TableValidationError, match="column 'id': has type DOUBLE, expected text"):
        load_table(DataConfig(source="parquet", path=path, id_format="any"), "feature")


def test_sql_query_over_a_csv_relative_to_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _csv(tmp_path, f"code,score,extra\n{IDS[0]},1,9\n{IDS[1]},2,9\n", name="scores.csv")
    monkeypatch.chdir("/")
    cfg = DataConfig(
        source="sql",
        query="SELECT code AS id, score * 10 AS s10 FROM read_csv('scores.csv') ORDER BY code;",
        base_dir=tmp_path,
    )

    table = load_table(cfg, "feature")

    assert sorted(table.ids) == sorted(IDS[:2]) and table.features == ["s10"]
    assert table.source == "sql query"
    assert sorted(table.X[:, 0].tolist()) == [10.0, 20.0]


def test_sql_query_over_a_duckdb_database(tmp_path: Path) -> None:
    database = tmp_path / "bank.duckdb"
    con = duckdb.connect(str(database))
    con.execute("CREATE TABLE loans (id VARCHAR, overdue DOUBLE, bad INTEGER)")
    con.execute("INSERT INTO loans VALUES (?, 0.5, 0), (?, NULL, 1)", [IDS[0], IDS[1]])
    con.close()
    cfg = DataConfig(
        source="sql",
        query="SELECT id, overdue, bad FROM loans ORDER BY id",
        database=database,
        label_column="bad",
    )

    table = load_table(cfg, "label")

    order = np.argsort(IDS[:2])
    assert table.ids == [IDS[:2][i] for i in order]
    assert table.y is not None and table.y.tolist() == [[0, 1][i] for i in order]
    np.testing.assert_array_equal(table.X[:, 0], [[0.5, np.nan][i] for i in order])


def test_sql_problems_use_result_rows(tmp_path: Path) -> None:
    cfg = DataConfig(
        source="sql", query="SELECT * FROM (VALUES ('a', 1), ('a', 2)) t(id, x)", id_format="any"
    )

    with pytest.raises(TableValidationError) as caught:
        load_table(cfg, "feature")

    assert str(caught.value).startswith("sql query: 1 problem(s)")
    assert "row 1, row 2, column 'id': duplicate id" in str(caught.value)


def test_loading_is_vectorised(tmp_path: Path) -> None:
    n = 100_000
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 10))
    columns: dict[str, Any] = {"id": generate_uscc(rng, n), "default": rng.integers(0, 2, n)}
    columns |= {f"f{i}": X[:, i] for i in range(10)}
    path = tmp_path / "big.csv"
    pa_csv.write_csv(pa.table(columns), path)

    start = time.perf_counter()
    table = load_table(DataConfig(source="csv", path=path, label_column="default"), "label")
    elapsed = time.perf_counter() - start

    assert table.rows == n and table.X.shape == (n, 10)
    np.testing.assert_array_equal(table.X, X)  # shortest-repr text parses back exactly
    assert elapsed < 10, elapsed  # ~0.5 s here; a per-row Python loop would take far longer


_NUMERIC_TEXT = st.text(alphabet="0123456789+-.eE_ xinfaNALul", max_size=8)


def _reference_parse(text: str) -> float | None:
    """Expected reading of a feature cell: NaN for missing, a finite float, or None (refused)."""
    stripped = text.strip(WS)
    if stripped.lower() in ("", "na", "nan", "null"):
        return math.nan
    try:
        value = float(stripped)
    except ValueError:
        return None
    return value if math.isfinite(value) and "_" not in stripped else None


@settings(
    max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cells=st.lists(_NUMERIC_TEXT | st.floats(allow_nan=False).map(repr), min_size=1, max_size=10)
)
def test_feature_cells_parse_like_python_floats(tmp_path: Path, cells: list[str]) -> None:
    ids = generate_uscc(np.random.default_rng(0), len(cells))
    path = _parquet(tmp_path, {"id": ids, "x": pa.array(cells, pa.string())}, name="cells.parquet")
    expected = [_reference_parse(cell) for cell in cells]
    refused = {row for row, value in enumerate(expected, start=1) if value is None}

    try:
        table = load_table(DataConfig(source="parquet", path=path), "feature")
    except TableValidationError as err:
        flagged = {row for problem in err.problems for row in problem.rows}
        if all(math.isnan(v) for v in expected if v is not None) and not refused:
            assert "every value is missing" in str(err)
        else:
            assert flagged == refused, str(err)
    else:
        assert not refused
        np.testing.assert_array_equal(table.X[:, 0], np.array(expected, dtype=np.float64))


_ANY_ID = st.text(alphabet=st.sampled_from("ab7 \t\x00\x1f\x7f\x85\xa0é-"), max_size=6) | st.text(
    alphabet="xy", min_size=126, max_size=131
)


@settings(
    max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ids=st.lists(_ANY_ID, min_size=1, max_size=8, unique_by=lambda s: s.strip(WS)))
def test_any_format_ids(tmp_path: Path, ids: list[str]) -> None:
    path = _parquet(tmp_path, {"id": ids, "x": [1.0] * len(ids)}, name="ids.parquet")
    stripped = [s.strip(WS) for s in ids]
    refused = {
        row
        for row, s in enumerate(stripped, start=1)
        if not s or len(s) > 128 or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in s)
    }

    try:
        table = load_table(DataConfig(source="parquet", path=path, id_format="any"), "feature")
    except TableValidationError as err:
        assert {row for problem in err.problems for row in problem.rows} == refused, str(err)
    else:
        assert not refused
        assert table.ids == stripped

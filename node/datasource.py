"""Load the node's one table through DuckDB and refuse it, listing every problem, if invalid."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import duckdb
import numpy as np
import numpy.typing as npt

from common.errors import DataValidationError
from common.uscc import explain_invalid_uscc, uscc_valid_mask
from node.config import DataConfig
from node.findings import MAX_PER_KIND, Findings, Problem, show_value, validation_error

log = logging.getLogger("fedcredit.node")

Role = Literal["label", "feature"]

MISSING_TOKENS = ("", "na", "nan", "null")
"""Feature cells meaning "missing" (after trimming, case-insensitive); SQL NULL is missing too."""
MAX_ID_LENGTH = 128

_WS = "chr(32) || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)"
_CONTROL = r"[\x00-\x1f\x7f-\x9f]"
_INTEGER_TYPES = frozenset(
    ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT")
    + ("UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT")
)
_ID_BAD_EMPTY, _ID_BAD_FORM = 1, 2
_LABEL_NONE, _LABEL_BAD = -1, -2  # an applicant without a label; a label that is not 0 or 1
_NUMBER_EXPECTED = "a number such as -12.5 or 3e-4 (empty, NA, NaN or null for missing)"


@dataclass(frozen=True)
class TableSummary:
    """What a node tells the coordinator about its table: schema and missing shares, no values."""

    rows: int
    features: tuple[str, ...]
    missing_share: tuple[float, ...]
    has_label: bool
    unlabelled_rows: int = 0


@dataclass(frozen=True, eq=False)
class NodeTable:
    """The node's validated table: ids, a float64 feature matrix (NaN = missing), labels.

    At a label node `y` is 0 or 1, or -1 for an applicant without a label (DESIGN §3): such a
    row is scored, never trained on. Training reads `training_view()`, the labelled rows only.
    """

    ids: list[str]
    features: list[str]
    X: npt.NDArray[np.float64]
    y: npt.NDArray[np.int8] | None
    source: str

    @property
    def rows(self) -> int:
        """Number of rows (one per id)."""
        return len(self.ids)

    @property
    def unlabelled_rows(self) -> int:
        """Rows without a label (applicants); 0 at a feature node."""
        return 0 if self.y is None else int(np.count_nonzero(self.y < 0))

    def training_view(self) -> NodeTable:
        """The rows training may use: every row at a feature node, the labelled ones at a label
        node (in table order). Alignments and training positions refer to this view."""
        if self.y is None or not self.unlabelled_rows:
            return self
        keep = np.flatnonzero(self.y >= 0)
        X, y = self.X[keep], self.y[keep]
        X.setflags(write=False)
        y.setflags(write=False)
        return NodeTable(ids=[self.ids[i] for i in keep], features=self.features, X=X, y=y,
                         source=self.source)

    def schema(self) -> list[tuple[str, str]]:
        """Feature names with their type, as announced at registration."""
        return [(name, "float64") for name in self.features]

    def missing_shares(self) -> list[float]:
        """Share of missing values (NaN) per feature, in feature order."""
        if not self.rows:
            return [0.0] * len(self.features)
        return [float(s) for s in np.isnan(self.X).mean(axis=0)]

    def describe(self) -> TableSummary:
        """Rows, feature names and the share of missing values per feature."""
        return TableSummary(
            rows=self.rows,
            features=tuple(self.features),
            missing_share=tuple(self.missing_shares()),
            has_label=self.y is not None,
            unlabelled_rows=self.unlabelled_rows,
        )


def load_table(cfg: DataConfig, role: Role) -> NodeTable:
    """Read the table declared in ``cfg`` and validate it for a node of ``role``.

    Raises TableValidationError (a DataValidationError) listing every problem found.
    """
    source = str(cfg.path) if cfg.source != "sql" else "sql query"
    label = cfg.label_column if role == "label" else None
    if role == "label" and label is None:
        raise DataValidationError(f"{source}: data.label_column is required for a label node")
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET enable_progress_bar = false")
        _materialise(con, cfg)
        table = _check_and_fetch(con, cfg, label, role, source)
    except duckdb.Error as err:
        raise DataValidationError(f"{source}: cannot read the table: {err}") from err
    finally:
        con.close()
    log.info("loaded %s: %d rows, %d features", source, table.rows, len(table.features))
    return table


def _materialise(con: duckdb.DuckDBPyConnection, cfg: DataConfig) -> None:
    """Copy the declared source into temp table ``src`` (insertion order = file order)."""
    if cfg.base_dir is not None:
        con.execute(f"SET file_search_path = {_lit(str(cfg.base_dir))}")
    if cfg.source == "csv":
        body = f"read_csv({_lit(str(cfg.path))}, all_varchar = true, header = true)"
    elif cfg.source == "parquet":
        body = f"read_parquet({_lit(str(cfg.path))})"
    else:
        if cfg.database is not None:
            con.execute(f"ATTACH {_lit(str(cfg.database))} AS fedcredit_source (READ_ONLY)")
            con.execute("USE fedcredit_source")
        query = (cfg.query or "").strip().rstrip(";")
        body = f"({query})"
    con.execute(f"CREATE TEMP TABLE src AS SELECT * FROM {body}")


def _check_and_fetch(
    con: duckdb.DuckDBPyConnection, cfg: DataConfig, label: str | None, role: Role, source: str
) -> NodeTable:
    """Type every declared column in one pass, check the values, and build the NodeTable."""
    found = {name: kind for name, kind, *_ in con.execute("DESCRIBE temp.main.src").fetchall()}
    findings = Findings()
    features = (
        list(cfg.features)
        if cfg.features is not None
        else [name for name in found if name not in (cfg.id_column, label)]
    )
    _check_columns(findings, cfg.id_column, label, features, found, role, cfg.features is None)
    (rows,) = con.execute("SELECT count(*) FROM temp.main.src").fetchone() or (0,)
    if rows == 0:
        findings.add(Problem("the table has no data rows"))
    usable = {name for name in found if _kind(found[name]) != "other"}
    if findings.problems:
        if rows:
            _check_rows(con, cfg, label, [f for f in features if f in usable], found, findings)
        raise validation_error(source, cfg, findings)

    data = _check_rows(con, cfg, label, features, found, findings)
    if findings.problems:
        raise validation_error(source, cfg, findings)
    X = np.empty((rows, len(features)), dtype=np.float64)
    for i in range(len(features)):
        X[:, i] = data[f"x{i}"]
    X.setflags(write=False)
    y = data["y"].astype(np.int8) if label is not None else None
    if y is not None:
        y.setflags(write=False)
    return NodeTable(ids=data["id"].tolist(), features=features, X=X, y=y, source=source)


def _check_columns(
    findings: Findings,
    id_column: str,
    label: str | None,
    features: list[str],
    found: dict[str, str],
    role: Role,
    all_columns: bool,
) -> None:
    """Declared columns that are absent or of a type we cannot read."""
    declared = [(id_column, "data.id_column"), *([(label, "data.label_column")] if label else [])]
    declared += [(name, "data.features") for name in features]
    missing = [f"{name!r} ({where})" for name, where in declared if name not in found]
    if missing:
        columns = ", ".join(repr(name) for name in found) or "none"
        findings.add(Problem(f"missing column(s) {', '.join(missing)}; columns found: {columns}"))
    for name, where in declared:
        kind = found.get(name)
        if kind is None:
            continue
        if _kind(kind) == "other" or (name == id_column and _kind(kind) == "number"):
            expected = "text or whole numbers" if name == id_column else "numbers or text"
            leave_out = all_columns and where == "data.features"
            hint = " (list data.features to leave it out)" if leave_out else ""
            findings.add(Problem(f"has type {kind}, expected {expected}{hint}", name))
    if role == "feature" and not features:
        findings.add(Problem("no feature columns: a feature node must serve at least one"))


def _check_rows(
    con: duckdb.DuckDBPyConnection,
    cfg: DataConfig,
    label: str | None,
    features: list[str],
    found: dict[str, str],
    findings: Findings,
) -> dict[str, np.ndarray]:
    """One pass over ``src``: typed values with markers for bad cells, then the checks."""
    id_ok = cfg.id_column in found and _kind(found[cfg.id_column]) in ("text", "integer")
    inner = ["rowid AS r"]
    outer = ["r"]
    if id_ok:
        inner.append(f"coalesce(trim(CAST({_ident(cfg.id_column)} AS VARCHAR), {_WS}), '') AS id")
        form = (
            f"length(id) > {MAX_ID_LENGTH} OR regexp_matches(id, '{_CONTROL}')"
            if cfg.id_format == "any"
            else "false"
        )
        outer += [
            "id",
            f"CAST(CASE WHEN id = '' THEN {_ID_BAD_EMPTY} "
            f"WHEN {form} THEN {_ID_BAD_FORM} ELSE 0 END AS TINYINT) AS id_bad",
        ]
    if label is not None and label in found and _kind(found[label]) != "other":
        text = _kind(found[label]) == "text"
        inner.append(f"trim({_ident(label)}, {_WS}) AS yv" if text else f"{_ident(label)} AS yv")
        outer.append(f"{_label_expr(_kind(found[label]))} AS y")
    for i, name in enumerate(features):
        inner.append(f"{_ident(name)} AS v{i}")
        outer.append(f"{_feature_expr(f'v{i}', _kind(found[name]))} AS x{i}")
    query = f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} FROM temp.main.src)"
    data: dict[str, np.ndarray] = con.execute(query).fetchnumpy()
    if np.any(np.diff(data["r"]) != 1):  # DuckDB keeps scan order; a sort only if it did not
        order = np.argsort(data["r"], kind="stable")
        data = {name: column[order] for name, column in data.items()}

    if id_ok:
        _check_ids(con, cfg, data, findings)
    if "y" in data and label is not None:
        bad = np.flatnonzero(data["y"] == _LABEL_BAD)
        values = _raw_values(con, label, bad[:MAX_PER_KIND])
        findings.add_rows(
            label, bad + 1, [f"got {v}, expected 0 or 1" for v in values], "with a bad label"
        )
    for i, name in enumerate(features):
        x = data[f"x{i}"]
        bad = np.flatnonzero(np.isinf(x))
        values = _raw_values(con, name, bad[:MAX_PER_KIND])
        findings.add_rows(
            name,
            bad + 1,
            [f"got {v}, expected {_NUMBER_EXPECTED}" for v in values],
            f"with a non-numeric value in column {name!r}",
        )
        if len(x) and np.isnan(x).all():
            findings.add(Problem("every value is missing; drop the column or fill it", name))
    return data


def _check_ids(
    con: duckdb.DuckDBPyConnection, cfg: DataConfig, data: dict[str, np.ndarray], f: Findings
) -> None:
    """Empty ids, malformed ids (USCC or the "any" rules) and duplicates."""
    column, flags = cfg.id_column, data["id_bad"]
    empty = np.flatnonzero(flags == _ID_BAD_EMPTY)
    f.add_rows(column, empty + 1, ["empty id"] * MAX_PER_KIND, "with an empty id")
    if cfg.id_format == "any":
        bad = np.flatnonzero(flags == _ID_BAD_FORM)
        values = _raw_values(con, column, bad[:MAX_PER_KIND])
        expected = f"a non-empty id of at most {MAX_ID_LENGTH} characters, no control characters"
        f.add_rows(
            column,
            bad + 1,
            [f"got {v}, expected {expected}" for v in values],
            "with a malformed id",
        )
    else:
        ids = data["id"]
        checked = np.flatnonzero(flags == 0)
        bad = checked[~uscc_valid_mask(ids[checked])]
        reasons = [
            f"got {show_value(str(ids[row]))}, expected a USCC (18 characters, GB 32100-2015): "
            f"{explain_invalid_uscc(str(ids[row])) or 'not valid'}"
            for row in bad[:MAX_PER_KIND]
        ]
        f.add_rows(column, bad + 1, reasons, "with an invalid USCC (or set data.id_format = 'any')")
    nonempty = data["id"][flags != _ID_BAD_EMPTY].tolist()
    if len(set(nonempty)) == len(nonempty):
        return
    dup_query = (
        f"SELECT count(*) OVER (), count(*), list(r + 1 ORDER BY r)[1:{MAX_PER_KIND}] FROM "
        f"(SELECT rowid AS r, trim(CAST({_ident(column)} AS VARCHAR), {_WS}) AS id "
        "FROM temp.main.src) WHERE id <> '' GROUP BY id HAVING count(*) > 1 "
        f"ORDER BY min(r) LIMIT {MAX_PER_KIND}"
    )
    groups = con.execute(dup_query).fetchall()
    for _total, count, rows in groups:
        shown = f" (first {len(rows)} listed)" if count > len(rows) else ""
        f.add(
            Problem(
                f"duplicate id: the same id appears in {count} rows{shown}; ids must be unique",
                column,
                tuple(rows),
            )
        )
    if groups:
        f.more(groups[0][0] - len(groups), "duplicated ids")


def _raw_values(con: duckdb.DuckDBPyConnection, column: str, rows: np.ndarray) -> list[str]:
    """The cells of ``column`` at 0-based ``rows``, quoted and shortened for a message."""
    if len(rows) == 0:
        return []
    wanted = ", ".join(str(int(r)) for r in rows)
    got = dict(
        con.execute(
            f"SELECT rowid, CAST({_ident(column)} AS VARCHAR) FROM temp.main.src "
            f"WHERE rowid IN ({wanted})"
        ).fetchall()
    )
    return ["empty" if got.get(int(r)) is None else show_value(got[int(r)]) for r in rows]


def _kind(duck_type: str) -> str:
    """Coarse class of a DuckDB column type: text, integer, number, boolean or other."""
    if duck_type == "VARCHAR":
        return "text"
    if duck_type == "BOOLEAN":
        return "boolean"
    if duck_type in _INTEGER_TYPES:
        return "integer"
    if duck_type in ("FLOAT", "DOUBLE") or duck_type.startswith("DECIMAL"):
        return "number"
    return "other"


def _label_expr(kind: str) -> str:
    """0 or 1; -1 for an empty cell (an applicant: SQL NULL or blank text); -2 for anything else."""
    empty = "yv IS NULL OR yv = ''" if kind == "text" else "yv IS NULL"
    if kind == "text":
        return (
            f"CAST(CASE WHEN {empty} THEN {_LABEL_NONE} WHEN yv IN ('0', '0.0') THEN 0 "
            f"WHEN yv IN ('1', '1.0') THEN 1 ELSE {_LABEL_BAD} END AS TINYINT)"
        )
    return (
        f"CAST(CASE WHEN {empty} THEN {_LABEL_NONE} WHEN CAST(yv AS DOUBLE) = 0 THEN 0 "
        f"WHEN CAST(yv AS DOUBLE) = 1 THEN 1 ELSE {_LABEL_BAD} END AS TINYINT)"
    )


def _feature_expr(v: str, kind: str) -> str:
    """DOUBLE value, NaN for missing, +inf marking a bad cell (inf itself is bad too)."""
    if kind != "text":
        return (
            f"CASE WHEN {v} IS NULL OR isnan(CAST({v} AS DOUBLE)) THEN 'NaN'::DOUBLE "
            f"WHEN isinf(CAST({v} AS DOUBLE)) THEN 'Infinity'::DOUBLE ELSE CAST({v} AS DOUBLE) END"
        )
    # Parse first: CASE branches run only on the rows still undecided, and most cells parse.
    # TRY_CAST accepts surrounding whitespace and digit separators ("1_000"); we refuse the latter.
    tokens = ", ".join(_lit(t) for t in MISSING_TOKENS)
    parsed = f"TRY_CAST({v} AS DOUBLE)"
    return (
        f"CASE WHEN coalesce(isfinite({parsed}), false) AND NOT contains({v}, '_') THEN {parsed} "
        f"WHEN {v} IS NULL OR lower(trim({v}, {_WS})) IN ({tokens}) THEN 'NaN'::DOUBLE "
        "ELSE 'Infinity'::DOUBLE END"
    )


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"

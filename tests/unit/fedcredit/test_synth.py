"""Tests for the synthetic supply chain: files, coverage, reproducibility and the federated gain."""

import json
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow.csv as pacsv
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from common.uscc import is_valid_uscc
from fedcredit.synth import COLUMNS, SynthResult, synthesize

Table = dict[str, npt.NDArray[np.generic]]
N = 20000


def _read(path: Path) -> Table:
    opts = pacsv.ConvertOptions(column_types={"id": "string", "role": "string"})
    table = pacsv.read_csv(path, convert_options=opts)
    return {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}


def _lookup(ids: npt.NDArray[np.generic], table: Table, column: str) -> npt.NDArray[np.float64]:
    """Values of ``column`` for ``ids``; NaN where the table has no row (a left join on id)."""
    order = np.argsort(table["id"])
    keys = table["id"][order]
    pos = np.searchsorted(keys, ids).clip(0, len(keys) - 1)
    hit = keys[pos] == ids
    out = np.full(len(ids), np.nan)
    out[hit] = table[column][order][pos[hit]].astype(np.float64)
    return out


def _design(
    ids: npt.NDArray[np.generic],
    tables: list[tuple[Table, list[str]]],
    train: npt.NDArray[np.bool_],
) -> npt.NDArray[np.float64]:
    """Standardise on training rows, missing -> 0, plus one presence indicator per column."""
    blocks = []
    for table, cols in tables:
        for col in cols:
            v = _lookup(ids, table, col)
            seen = ~np.isnan(v)
            ref = v[train & seen]
            z = (v - ref.mean()) / (ref.std() or 1.0)
            blocks += [np.where(seen, z, 0.0), seen.astype(np.float64)]
    return np.column_stack(blocks)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[SynthResult, float]:
    out = tmp_path_factory.mktemp("synth_full")
    start = time.perf_counter()
    result = synthesize(out, enterprises=N, seed=7)
    return result, time.perf_counter() - start


def test_generation_is_fast(full: tuple[SynthResult, float]) -> None:
    _, seconds = full
    assert seconds < 3.0


def test_files_and_manifest(full: tuple[SynthResult, float]) -> None:
    result, _ = full
    names = sorted(p.name for p in result.out_dir.iterdir())
    expected = ["bank.csv", "columns.md", "core.csv", "logistics.csv", "parties.json"]
    assert names == sorted(expected + ["segments.csv", "tax.csv"])
    manifest = json.loads((result.out_dir / "parties.json").read_text())
    assert set(manifest["parties"]) == set(result.parties) == {"bank", "core", "logistics", "tax"}
    docs = (result.out_dir / "columns.md").read_text()
    for name, party in result.parties.items():
        entry = manifest["parties"][name]
        assert entry["path"] == party.path.name
        assert entry["rows"] == party.rows
        assert entry["feature_columns"] == party.feature_columns
        assert entry["label_column"] == party.label_column
        table = _read(party.path)
        label = [party.label_column] if party.label_column else []
        assert list(table) == [party.id_column, *label, *party.feature_columns]
        assert len(table["id"]) == party.rows
        for col in party.feature_columns:
            assert f"`{col}`" in docs
            assert table[col].dtype == np.float64, col
            assert COLUMNS[col][0] == name


def test_label_only_at_the_bank(full: tuple[SynthResult, float]) -> None:
    result, _ = full
    for name, party in result.parties.items():
        header = party.path.read_text().split("\n", 1)[0].split(",")
        assert ("default" in header) == (name == "bank")
        assert (party.label_column == "default") == (name == "bank")
    labels = _read(result.parties["bank"].path)["default"]
    assert set(np.unique(labels)) == {0, 1}
    assert 0.08 <= labels.mean() <= 0.12


def test_ids_are_valid_unique_uscc(full: tuple[SynthResult, float]) -> None:
    result, _ = full
    everyone = _read(result.segments_path)["id"]
    assert len(everyone) == N == len(set(everyone))
    assert all(is_valid_uscc(str(code), check_org_code=True) for code in everyone)
    for party in result.parties.values():
        ids = _read(party.path)["id"]
        assert len(set(ids)) == len(ids)
        assert set(ids) <= set(everyone)


def test_coverage_differs_by_party(full: tuple[SynthResult, float]) -> None:
    result, _ = full
    share = {name: p.rows / N for name, p in result.parties.items()}
    assert 0.60 <= share["bank"] <= 0.70
    assert 0.77 <= share["core"] <= 0.83
    assert 0.62 <= share["logistics"] <= 0.68
    assert 0.82 <= share["tax"] <= 0.88


def test_credit_white_has_no_history_and_sits_deeper_in_the_chain(
    full: tuple[SynthResult, float],
) -> None:
    result, _ = full
    seg = _read(result.segments_path)
    bank = _read(result.parties["bank"].path)
    white = _lookup(bank["id"], seg, "credit_white") == 1
    for col in ("past_overdue_count", "max_overdue_days", "utilisation", "collateral_ratio"):
        assert np.isnan(bank[col][white]).all()
        assert np.isnan(bank[col][~white]).mean() < 0.05
    assert (bank["loan_count"][white & ~np.isnan(bank["loan_count"])] == 0).all()
    white_by_tier = [seg["credit_white"][seg["tier"] == t].mean() for t in (1, 2, 3)]
    assert white_by_tier[0] < white_by_tier[1] < white_by_tier[2]
    assert set(np.unique(seg["role"])) == {"supplier", "dealer"}
    assert set(np.unique(seg["core"])) == {1, 2, 3, 4, 5}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = synthesize(tmp_path / "a", enterprises=1500, seed=11)
    b = synthesize(tmp_path / "b", enterprises=1500, seed=11)
    c = synthesize(tmp_path / "c", enterprises=1500, seed=12)
    for file in sorted(p.name for p in a.out_dir.iterdir()):
        assert (a.out_dir / file).read_bytes() == (b.out_dir / file).read_bytes(), file
    assert (a.out_dir / "tax.csv").read_bytes() != (c.out_dir / "tax.csv").read_bytes()


def test_several_banks_split_the_same_customers(tmp_path: Path) -> None:
    one = synthesize(tmp_path / "one", enterprises=3000, seed=5, banks=1)
    three = synthesize(tmp_path / "three", enterprises=3000, seed=5, banks=3)
    assert set(three.parties) == {"bank_1", "bank_2", "bank_3", "core", "logistics", "tax"}
    assert not (three.out_dir / "bank.csv").exists()
    id_sets = [set(_read(three.parties[f"bank_{k}"].path)["id"]) for k in (1, 2, 3)]
    assert all(len(s) > 0 for s in id_sets)
    assert not (id_sets[0] & id_sets[1] or id_sets[0] & id_sets[2] or id_sets[1] & id_sets[2])
    assert set().union(*id_sets) == set(_read(one.parties["bank"].path)["id"])
    schema = one.parties["bank"].path.read_text().split("\n", 1)[0]
    for k in (1, 2, 3):
        party = three.parties[f"bank_{k}"]
        assert party.path.read_text().split("\n", 1)[0] == schema
        assert party.label_column == "default"
    for name in ("core", "logistics", "tax", "segments"):
        assert (one.out_dir / f"{name}.csv").read_bytes() == (
            three.out_dir / f"{name}.csv"
        ).read_bytes()


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    for kwargs in ({"enterprises": 0}, {"banks": 0}, {"seed": -1}):
        with pytest.raises(ValueError):
            synthesize(tmp_path, **kwargs)


def test_all_parties_beat_the_bank_alone(full: tuple[SynthResult, float]) -> None:
    """DESIGN §7: pooled data clearly beats the bank's, most of all on tier-2/3 and credit-white."""
    result, _ = full
    bank = _read(result.parties["bank"].path)
    order = np.argsort(bank["id"])  # independent of the file's row order
    ids, y = bank["id"][order], bank["default"][order].astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=0.3, random_state=0, stratify=y
    )
    train = np.zeros(len(y), dtype=bool)
    train[train_idx] = True
    bank_cols = [(bank, result.parties["bank"].feature_columns)]
    others = [
        (_read(result.parties[p].path), result.parties[p].feature_columns)
        for p in ("core", "logistics", "tax")
    ]
    scores = {}
    for name, tables in (("bank", bank_cols), ("all", bank_cols + others)):
        x = _design(ids, tables, train)
        model = LogisticRegression(max_iter=2000).fit(x[train], y[train])
        scores[name] = model.predict_proba(x[~train])[:, 1]
    seg = _read(result.segments_path)
    tier = _lookup(ids[~train], seg, "tier")
    white = _lookup(ids[~train], seg, "credit_white")
    y_test = y[~train]
    groups = {
        "overall": np.ones(len(y_test), dtype=bool),
        "tier1": tier == 1,
        "tier2": tier == 2,
        "tier3": tier == 3,
        "tier2/3": tier >= 2,
        "credit-white": white == 1,
        "with history": white == 0,
    }
    auc = {
        g: {m: roc_auc_score(y_test[mask], scores[m][mask]) for m in scores}
        for g, mask in groups.items()
    }
    gap = {g: a["all"] - a["bank"] for g, a in auc.items()}
    for g, a in auc.items():
        n = int(groups[g].sum())
        print(f"{g:13s} n={n:5d} all={a['all']:.3f} bank={a['bank']:.3f} gap={gap[g]:+.3f}")
    assert 0.76 <= auc["overall"]["all"] <= 0.86
    assert gap["overall"] >= 0.08
    assert gap["tier2/3"] > gap["overall"]
    assert gap["tier2/3"] > gap["tier1"]
    assert gap["credit-white"] > gap["overall"] > gap["with history"]
    assert auc["credit-white"]["bank"] < 0.66


def test_shift_deteriorates_improves_and_is_reproducible(tmp_path: Path) -> None:
    from fedcredit.synth_shift import shift_chain

    for name in ("a", "b"):
        synthesize(tmp_path / name, enterprises=800, seed=3)
    before = (tmp_path / "a" / "core.csv").read_text()
    shifts = [shift_chain(tmp_path / name, deteriorate=0.1, improve=0.1, seed=4)
              for name in ("a", "b")]
    assert shifts[0].deteriorated == shifts[1].deteriorated and len(shifts[0].deteriorated) == 80
    assert not set(shifts[0].deteriorated) & set(shifts[0].improved)
    after = (tmp_path / "a" / "core.csv").read_text()
    assert after == (tmp_path / "b" / "core.csv").read_text() and after != before
    rows = {line.split(",")[0]: line.split(",") for line in after.splitlines()[1:]}
    old = {line.split(",")[0]: line.split(",") for line in before.splitlines()[1:]}
    header = after.splitlines()[0].split(",")
    j = header.index("order_count")
    bad = [i for i in shifts[0].deteriorated if i in rows and rows[i][j] and old[i][j]]
    assert all(float(rows[i][j]) <= float(old[i][j]) for i in bad)
    assert len(rows) == len(old)

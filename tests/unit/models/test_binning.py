"""Federated binning in process: parity with optbinning (pooled), floors, merges, selection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crypto.he import BFV_SUITE, PlainTwin, SbtSuite
from models.binning import BinningConfig
from models.binning.algorithm import ALGORITHM, apply_floors
from models.binning.bins import ColumnBins, bin_column, merge_small, woe_iv
from models.binning.feature import BinsBelowFloor, FeatureParty, load_bins
from models.binning.label import LabelParty
from models.binning.optimal import optimal_merges
from models.protocol import BelowFloor, Floors
from models.runtime import LocalRun, run_local
from models.vlr import FeatureAlignment

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


def give_credit(rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bank columns, labels, host columns) of the first `rows` rows (same ids, same order)."""
    guest = DATA / "give_credit_hetero_guest.csv"
    if not guest.exists():
        pytest.skip("../shared/data is not beside this checkout")
    g = np.loadtxt(guest, delimiter=",", skiprows=1, max_rows=rows)
    h = np.loadtxt(DATA / "give_credit_hetero_host.csv", delimiter=",", skiprows=1,
                   max_rows=rows)
    assert np.array_equal(g[:, 0], h[:, 0])
    return g[:, 2:], g[:, 1], h[:, 1:]


def federate(bank: np.ndarray, y: np.ndarray, host: np.ndarray, config: BinningConfig,
             suite: SbtSuite, positions: np.ndarray | None = None,
             ) -> tuple[LocalRun, LabelParty, FeatureParty]:
    n = y.size
    pos = np.arange(host.shape[0]) if positions is None else positions
    label = LabelParty("job", bank, y, ["host"], config, suite=suite)
    feature = FeatureParty("host", "job", host,
                           FeatureAlignment(n, pos, np.arange(pos.size)), config, suite=suite)
    run = run_local(ALGORITHM, ("bank", label), {"host": feature}, config, capture=True)
    return run, label, feature


def pooled_table(x: np.ndarray, y: np.ndarray, edges: np.ndarray,
                 special: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """optbinning on pooled rows with the given edges: (WoE, IV) per bin incl. special, missing."""
    from optbinning import OptimalBinning

    fit = OptimalBinning(dtype="numerical", user_splits=edges if edges.size else None,
                         user_splits_fixed=[True] * edges.size if edges.size else None,
                         monotonic_trend=None, special_codes=list(special) or None,
                         max_n_prebins=200, min_prebin_size=1e-6)
    fit.fit(x, y.astype(int))
    assert np.array_equal(np.asarray(fit.splits), edges)
    table = fit.binning_table.build(add_totals=False)
    return table["WoE"].to_numpy(float), table["IV"].to_numpy(float)


def parity(label: LabelParty, feature: FeatureParty, host: np.ndarray, y: np.ndarray,
           special: tuple[float, ...] = ()) -> float:
    """Largest |federated - pooled optbinning| over every host bin's WOE and IV."""
    worst = 0.0
    aligned, held = feature.aligned()
    assert held.all()
    for j, column in enumerate(feature.bins):
        found = next(c for c in label.table if c.key == f"host:{column.name}")
        woe, iv = pooled_table(aligned[:, j], y, column.edges, special)
        slots = found.slots()
        assert len(slots) == woe.size
        worst = max(worst, float(np.max(np.abs(found.woe[slots] - woe))),
                    float(np.max(np.abs(found.iv_bins[slots] - iv))))
        assert column.woe is not None and np.array_equal(column.woe, found.woe)
    return worst


@pytest.fixture(scope="module")
def credit() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return give_credit(6000)


def test_encrypted_woe_and_iv_equal_optbinning_on_pooled_data(credit: tuple[
        np.ndarray, np.ndarray, np.ndarray]) -> None:
    bank, y, host = credit
    config = BinningConfig(method="optimal", bins=20, min_bin_rows=128)
    run, label, feature = federate(bank, y, host, config, BFV_SUITE)
    assert parity(label, feature, host, y) <= 1e-9
    report = run.reports[0]
    assert report["characteristics"] == 10 and len(report["iv_table"]) == 10
    assert "bin 0" in {r["bin"] for c in label.table if c.party == "host" for r in c.rows()}
    # the bank sees indices, never the host's edges: no edge value appears in its summary
    summary = label.summary_bytes().decode()
    assert all(f"{e:.6g}" not in summary for c in feature.bins for e in c.edges[:3])
    own = np.stack([c.transform(bank[:, j]) for j, c in enumerate(label.own)], axis=1)
    r = np.corrcoef(np.hstack([own, feature.transform(host)]), rowvar=False)
    cross = [abs(label.correlations[(f"bank:x{i}", f"host:x{f}")] - r[i, 5 + f])
             for i in range(5) for f in range(5)]  # masked encrypted inner products
    assert max(cross) < 1e-3
    assert set(run.stored) == {"bank", "host"}
    stored = load_bins(run.stored["host"]["model"])
    assert [c.name for c in stored] == [f"x{j}" for j in range(5)]
    assert np.allclose(feature.transform(host), np.stack(
        [c.transform(host[:, j]) for j, c in enumerate(stored)], axis=1))


def test_special_and_missing_values_get_their_own_bins(credit: tuple[
        np.ndarray, np.ndarray, np.ndarray]) -> None:
    bank, y, host = credit
    host = host.copy()
    rng = np.random.default_rng(1)
    host[rng.random(y.size) < 0.05, 0] = np.nan
    host[rng.random(y.size) < 0.04, 1] = -999.0
    config = BinningConfig(method="quantile", bins=10, special_codes=(-999.0,),
                           max_correlation=None)
    _, label, feature = federate(bank, y, host, config, PlainTwin.suite_for_testing())
    assert parity(label, feature, host, y, special=(-999.0,)) <= 1e-9
    x0 = next(c for c in label.table if c.key == "host:x0")
    x1 = next(c for c in label.table if c.key == "host:x1")
    assert x0.counts[config.bins + 1] == np.isnan(host[:, 0]).sum() > 0
    assert x1.counts[config.bins] == (host[:, 1] == -999.0).sum() > 0


def test_small_bins_merge_at_the_feature_node_and_are_audited() -> None:
    rng = np.random.default_rng(2)
    n = 2000
    values = rng.normal(size=n)
    values[:5] = -999.0  # five special values and three missing: both below the floor
    values[5:8] = np.nan
    values[8:10] = 50.0  # an outlier bin of two rows
    held = np.ones(n, bool)
    column = bin_column("c", values, held, 40, 100, (-999.0,))
    codes = column.codes(values)
    counts = np.bincount(codes, minlength=42)
    assert counts[(counts > 0)].min() >= 100
    assert column.special_to == column.missing_to < 40  # folded into the largest value bin
    assert column.merges["special"] == column.merges["missing"] == 1
    feature = FeatureParty("f", "j", values[:, None], FeatureAlignment(n, np.arange(n),
                           np.arange(n)), BinningConfig(bins=40, min_bin_rows=100),
                           suite=PlainTwin.suite_for_testing())
    context = PlainTwin.suite_for_testing().make_private()
    feature.prebins(context.public_bytes(),
                    context.encrypt_chunks(rng.integers(0, 2, n).astype(np.uint64), 42))
    events = feature.drain_audit()
    assert events and events[0][0] == "binning.merged_below_floor"


def test_bins_below_the_floor_are_refused() -> None:
    with pytest.raises(BelowFloor, match="min_bin_rows"):
        apply_floors(BinningConfig(min_bin_rows=20), Floors(min_bin_rows=50))
    n = 1000
    values = np.arange(n, dtype=np.float64)[:, None]
    feature = FeatureParty("f", "j", values, FeatureAlignment(n, np.arange(n), np.arange(n)),
                           BinningConfig(bins=4, min_bin_rows=100),
                           suite=PlainTwin.suite_for_testing())
    feature.bins = [ColumnBins("x0", np.array([10.0, 500.0]), 4)]  # a crafted 10-row bin
    held = np.ones(n, bool)
    with pytest.raises(BinsBelowFloor, match="below its minimum of 100"):
        feature.check_floor(feature._code_matrix(values, held), held)
    assert feature.drain_audit()[0][0] == "binning.refused"


def test_merges_on_counts_equal_optbinning_on_raw_rows() -> None:
    """Pins optbinning's behaviour the bank relies on: weighted counts = raw rows."""
    from optbinning import OptimalBinning

    rng = np.random.default_rng(0)
    x = rng.normal(size=20000)
    y = (rng.random(x.size) < 1 / (1 + np.exp(-(0.8 * x - 2.5)))).astype(int)
    edges = np.unique(np.quantile(x, np.arange(1, 20) / 20))
    codes = np.searchsorted(edges, x, side="right")
    events = np.bincount(codes, weights=y, minlength=20)
    rows = np.bincount(codes, minlength=20)
    kept = optimal_merges(rows - events, events, monotonic_trend="auto_asc_desc",
                          max_n_bins=None, min_bin_rows=1)
    raw = OptimalBinning(dtype="numerical", solver="cp", monotonic_trend="auto_asc_desc",
                         user_splits=edges, min_bin_size=1 / x.size).fit(x, y)
    assert np.array_equal(edges[kept], np.asarray(raw.splits))
    assert 1 <= kept.sum() < kept.size


def test_woe_and_iv_follow_optbinning_conventions() -> None:
    woe, iv = woe_iv(np.array([90, 50, 10, 0]), np.array([10, 50, 0, 0]))
    assert woe[1] == pytest.approx(np.log((50 / 150) / (50 / 60)))
    assert woe[2] == woe[3] == iv[2] == iv[3] == 0.0
    edges, merges = merge_small(np.array([1.0, 2.0, 3.0]), np.array([500, 3, 600, 40]), 100)
    assert merges == 2 and edges.tolist() == [2.0]


def test_rows_the_feature_node_lacks_sit_in_its_missing_bin(credit: tuple[
        np.ndarray, np.ndarray, np.ndarray]) -> None:
    bank, y, host = credit
    keep = np.arange(0, y.size, 3)  # the host holds a third of the bank's rows
    config = BinningConfig(method="quantile", bins=8, max_correlation=0.9)
    _, label, feature = federate(bank, y, host[keep], config, PlainTwin.suite_for_testing(),
                                 positions=keep)
    x0 = next(c for c in label.table if c.key == "host:x0")
    assert x0.counts[config.bins + 1] == y.size - keep.size
    assert {("bank:x0", "host:x0"), ("bank:x1", "host:x4")} <= set(label.correlations)

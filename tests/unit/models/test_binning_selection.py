"""Selection across parties in federated binning: two feature nodes' correlations, VIF, refusals."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
from pydantic import ValidationError

from crypto.he import BFV_SUITE, SbtSuite
from models.binning import WOE_BITS, BinningConfig
from models.binning.algorithm import ALGORITHM, CorrelationsRefused, apply_floors
from models.binning.feature import FeatureParty
from models.binning.label import LabelParty
from models.binning.select import Characteristic, vif_filter
from models.binning.wire import CorrelationHead, unpack
from models.protocol import Floors
from models.runtime import LocalRun, run_local
from models.vlr import FeatureAlignment
from tests.unit.models.test_binning import federate, give_credit

ROWS = 6000
EPS = 2.0 ** -(WOE_BITS + 1)  # |quantised WOE - WOE| of every value in an inner product


def federate_many(bank: np.ndarray, y: np.ndarray, tables: Mapping[str, np.ndarray],
                  config: BinningConfig, suite: SbtSuite = BFV_SUITE,
                  ) -> tuple[LocalRun, LabelParty, dict[str, FeatureParty]]:
    """The real protocol in process with one feature node per table (every row held)."""
    n = y.size
    label = LabelParty("job", bank, y, list(tables), config, suite=suite)
    features = {name: FeatureParty(name, "job", table,
                                   FeatureAlignment(n, np.arange(n), np.arange(n)), config,
                                   suite=suite)
                for name, table in tables.items()}
    run = run_local(ALGORITHM, ("bank", label), features, config, capture=True)
    return run, label, features


def pooled_woe(label: LabelParty, bank: np.ndarray, features: Mapping[str, FeatureParty],
               tables: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Every party's WOE-encoded columns side by side, as if pooled: (keys, rows x columns)."""
    keys = [f"bank:{c.name}" for c in label.own]
    columns = [c.transform(bank[:, j]) for j, c in enumerate(label.own)]
    for name, party in features.items():
        keys += [f"{name}:{c.name}" for c in party.bins]
        columns += list(party.transform(tables[name]).T)
    return keys, np.stack(columns, axis=1)


def regression_vif(woe: np.ndarray) -> np.ndarray:
    """VIF_j = 1 / (1 - R_j^2), column j regressed on the others with an intercept (numpy OLS),
    as statsmodels' variance_inflation_factor computes it."""
    out = []
    for j in range(woe.shape[1]):
        others = np.column_stack([np.ones(woe.shape[0]), np.delete(woe, j, axis=1)])
        beta, *_ = np.linalg.lstsq(others, woe[:, j], rcond=None)
        residual = woe[:, j] - others @ beta
        out.append(woe[:, j].var() / residual.var())
    return np.asarray(out)


@pytest.fixture(scope="module")
def credit() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return give_credit(ROWS)


def test_cross_node_correlations_and_vifs_equal_the_pooled_columns(credit: tuple[
        np.ndarray, np.ndarray, np.ndarray]) -> None:
    bank, y, host = credit
    tables = {"f1": host[:, :3], "f2": host[:, 3:]}
    config = BinningConfig(method="quantile", bins=10, min_iv=0.0, max_correlation=None,
                           max_vif=1e9)  # every column selected, every VIF reported
    run, label, features = federate_many(bank, y, tables, config)
    assert run.reports[0]["vif_regularised"] is False
    keys, woe = pooled_woe(label, bank, features, tables)
    constant = [k for k, sd in zip(keys, woe.std(axis=0), strict=True) if sd == 0]
    for key in constant:  # a one-bin column: r = 0 with every other by convention, VIF 1
        assert all(r == 0 for pair, r in label.correlations.items() if key in pair)
        assert next(c.vif for c in label.table if c.key == key) == pytest.approx(1, abs=1e-12)
    varying = [j for j, k in enumerate(keys) if k not in constant]
    keys, woe = [keys[j] for j in varying], woe[:, varying]
    r, sd = np.corrcoef(woe, rowvar=False), woe.std(axis=0)

    # every (f1, f2) pair: an encrypted inner product, off only by WOE quantisation. First order,
    # with |e| <= EPS per value: |dr| <= (1 + |r|) EPS (1/sd_a + 1/sd_b) <= 2 EPS (1/sd_a + 1/sd_b)
    bound = np.zeros_like(r)
    for i, a in enumerate(keys):
        for j, b in enumerate(keys):
            if a.split(":")[0] != b.split(":")[0]:  # across parties: a decoded inner product
                bound[i, j] = 2 * EPS * (1 / sd[i] + 1 / sd[j])
    cross = [(i, j) for i, a in enumerate(keys) for j, b in enumerate(keys)
             if a.startswith("f1:") and b.startswith("f2:")]
    assert len(cross) == 3 * 2
    for i, j in cross:
        assert abs(label.correlations[(keys[i], keys[j])] - r[i, j]) <= bound[i, j] + 1e-12
    for (a, b), found in label.correlations.items():  # every pair known, each within its bound
        if a not in constant and b not in constant:
            i, j = keys.index(a), keys.index(b)
            assert abs(found - r[i, j]) <= bound[i, j] + 1e-9, (a, b)
    every = len(keys) + len(constant)
    assert len(label.correlations) == every * (every - 1) // 2

    # VIF = [R^-1]_jj; a perturbation dR moves it by <= ||R^-1 e_j||^2 ||dR||_F (first order;
    # twice that covers the second-order term at these sizes)
    expected = regression_vif(woe)
    inverse = np.linalg.inv(r)
    tolerance = 2 * np.sum(inverse**2, axis=0) * np.linalg.norm(bound) + 1e-9
    found = np.array([next(c.vif for c in label.table if c.key == k) for k in keys])
    assert np.all(np.abs(found - expected) <= tolerance), (found, expected, tolerance)
    assert all("vif" in row for row in run.reports[0]["iv_table"])
    worst = max(abs(label.correlations[(keys[i], keys[j])] - r[i, j]) for i, j in cross)
    print(f"cross-node r: max error {worst:.2e} (bounds {bound[bound > 0].min():.2e}..); VIF: "
          f"max error {np.max(np.abs(found - expected)):.2e} (tolerances {tolerance.min():.2e}..)")


def noisy_copy(credit: tuple[np.ndarray, np.ndarray, np.ndarray], scale: float,
               ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """f2 holds a noisy copy of f1's first column beside its own two: its ranks plus normal
    noise of `scale` x the row count (the column is heavy-tailed: noise on its values would
    either vanish or swamp it)."""
    bank, y, host = credit
    rng = np.random.default_rng(7)
    ranks = np.argsort(np.argsort(host[:, 0])).astype(np.float64)
    copy = ranks + scale * y.size * rng.normal(size=y.size)
    return bank, y, {"f1": host[:, :3], "f2": np.column_stack([host[:, 3:], copy])}


def test_a_noisy_copy_on_another_node_is_dropped_by_the_correlation_filter(credit: tuple[
        np.ndarray, np.ndarray, np.ndarray]) -> None:
    bank, y, tables = noisy_copy(credit, 0.03)
    config = BinningConfig(method="quantile", bins=10, min_iv=0.0, max_correlation=0.7)
    _, label, _ = federate_many(bank, y, tables, config)
    pair = ("f1:x0", "f2:x2")
    r = label.correlations[pair]
    assert r > 0.7
    first, second = (next(c for c in label.table if c.key == k) for k in pair)
    kept, dropped = (first, second) if (-first.iv, first.key) < (-second.iv, second.key) else (
        second, first)
    assert kept.selected and not dropped.selected
    assert dropped.reason == f"correlated with {kept.key} (r = {r:.3f})"


def test_a_noisy_copy_on_another_node_is_dropped_by_vif(credit: tuple[
        np.ndarray, np.ndarray, np.ndarray]) -> None:
    bank, y, tables = noisy_copy(credit, 0.03)
    config = BinningConfig(method="quantile", bins=10, min_iv=0.0, max_correlation=None,
                           max_vif=5.0)
    run, label, features = federate_many(bank, y, tables, config)
    keys, woe = pooled_woe(label, bank, features, tables)
    pooled = dict(zip(keys, regression_vif(woe), strict=True))
    worst = max(pooled, key=lambda k: pooled[k])
    assert worst in {"f1:x0", "f2:x2"} and pooled[worst] > 5  # the copy or its original
    dropped = [c for c in label.table if not c.selected]
    assert [c.key for c in dropped] == [worst]
    assert dropped[0].reason.startswith("VIF ") and dropped[0].reason.endswith("above 5")
    assert dropped[0].vif is not None and dropped[0].vif > 5
    assert all(c.vif is not None and c.vif <= 5 for c in label.table if c.selected)
    report = run.reports[0]
    assert report["selected"] == len(keys) - 1
    assert {r["name"] for r in report["iv_table"] if r["party"] == worst.split(":")[0]
            and not r["selected"]} == {worst.split(":")[1]}


def test_an_exact_copy_on_another_node_is_regularised_and_dropped_by_vif(credit: tuple[
        np.ndarray, np.ndarray, np.ndarray]) -> None:
    bank, y, host = credit
    n = 3000
    tables = {"f1": host[:n, :2], "f2": np.column_stack([host[:n, 2], host[:n, 0]])}
    config = BinningConfig(method="quantile", bins=8, min_iv=0.0, max_correlation=None,
                           max_vif=10.0)
    run, label, _ = federate_many(bank[:n], y[:n], tables, config)
    assert label.correlations[("f1:x0", "f2:x1")] == pytest.approx(1, abs=1e-12)
    # exact and quantised entries together: R singular (or slightly indefinite), regularised
    assert run.reports[0]["vif_regularised"] is True
    twins = [next(c for c in label.table if c.key == k) for k in ("f1:x0", "f2:x1")]
    assert twins[0].iv == twins[1].iv  # the same bins, the same counts
    kept, dropped = sorted(twins, key=lambda c: not c.selected)
    assert kept.selected and not dropped.selected
    assert dropped.reason.startswith("VIF ") and dropped.vif is not None and dropped.vif > 1e4
    assert all(c.selected and c.vif is not None and 1 <= c.vif <= 10
               for c in label.table if c is not dropped)


def test_vif_drops_the_highest_first_and_the_lower_iv_on_ties() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(size=(500, 3))
    columns = np.column_stack([base, base[:, 0], base[:, 1] + 0.3 * rng.normal(size=500)])
    keys = ["p:a", "p:b", "p:c", "q:a", "q:b"]  # q:a an exact copy of p:a, q:b close to p:b
    r = np.corrcoef(columns, rowvar=False)
    correlated = {(keys[i], keys[j]): float(r[i, j]) for i in range(5) for j in range(i + 1, 5)}

    def table(q_a_events: list[int]) -> list[Characteristic]:
        out = []
        for key in keys:
            party, name = key.split(":")
            events = q_a_events if key == "q:a" else [10, 20, 30, 40]
            out.append(Characteristic.of(party, name, np.full(4, 100), np.array(events), 2))
            out[-1].selected = True
        return out

    equal = table([10, 20, 30, 40])  # p:a and q:a: the same VIF and the same IV
    assert vif_filter(equal, correlated, 20.0) is True  # singular: regularised
    assert [c.key for c in equal if not c.selected] == ["q:a"]  # the later key goes
    rest = [0, 1, 2, 4]
    assert [c.vif for c in equal if c.selected] == pytest.approx(
        list(regression_vif(columns[:, rest])), rel=1e-9)
    stronger = table([5, 15, 35, 45])  # q:a's IV is higher: p:a goes
    assert stronger[3].iv > stronger[0].iv
    vif_filter(stronger, correlated, 20.0)
    assert [c.key for c in stronger if not c.selected] == ["p:a"]
    strict = table([10, 20, 30, 40])
    vif_filter(strict, correlated, 5.0)  # then the higher of p:b, q:b (about 12 each)
    second = rest[int(np.argmax(regression_vif(columns[:, rest])))]
    assert {c.key for c in strict if not c.selected} == {"q:a", keys[second]}
    assert "VIF" in strict[second].reason and strict[second].vif is not None
    assert strict[second].vif > 5
    with pytest.raises(ValueError, match="no correlation known between p:a and p:b"):
        vif_filter(table([10, 20, 30, 40]), {}, 5.0)


def test_one_feature_node_without_vif_sends_what_it_sent_before(credit: tuple[
        np.ndarray, np.ndarray, np.ndarray]) -> None:
    bank, y, host = credit
    run, label, _ = federate(bank[:2000], y[:2000], host[:2000],
                             BinningConfig(method="quantile", bins=6), BFV_SUITE)
    assert set(run.bytes_by_message) == {"public_context", "labels", "prebins", "bins",
                                         "correlation", "report"}
    answer = next(data for kind, data in run.payloads if kind == "correlation")
    head, _ = unpack(answer, CorrelationHead, "answer")
    assert head.matrix is None
    assert b'"matrix"' not in answer and b'"vif' not in next(
        data for kind, data in run.payloads if kind == "report")
    assert all(c.vif is None for c in label.table)


def test_two_nodes_send_columns_one_way_and_vif_needs_every_matrix(credit: tuple[
        np.ndarray, np.ndarray, np.ndarray]) -> None:
    bank, y, host = credit
    n = 2000
    tables = {"b": host[:n, :2], "a": host[:n, 2:4], "c": host[:n, 4:]}
    config = BinningConfig(method="quantile", bins=6, max_vif=20.0)
    run, label, _ = federate_many(bank[:n], y[:n], tables, config)
    # a sorts first: its columns go to b and c; b's to c; c sends none; each pair once
    assert len([k for k, _ in run.payloads if k == "columns"]) == 3
    assert len([k for k, _ in run.payloads if k == "cross"]) == 2
    pairs = {(a.split(":")[0], b.split(":")[0]) for a, b in label.correlations}
    assert {("a", "b"), ("a", "c"), ("b", "c")} <= pairs
    assert not {("b", "a"), ("c", "a"), ("c", "b")} & pairs


def test_max_vif_is_validated_and_a_node_may_refuse_to_share_its_matrix() -> None:
    with pytest.raises(ValidationError, match="max_vif 1.0 must be a number > 1"):
        BinningConfig(max_vif=1.0)
    with pytest.raises(ValidationError, match="max_vif needs share_woe"):
        BinningConfig(max_vif=5.0, share_woe=False, max_correlation=None)
    asked = BinningConfig(max_vif=5.0)
    assert apply_floors(asked, Floors()) is asked
    assert apply_floors(BinningConfig(), Floors(share_correlations=False)).max_vif is None
    with pytest.raises(CorrelationsRefused, match="share_correlations = false"):
        apply_floors(asked, Floors(share_correlations=False))

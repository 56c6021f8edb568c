"""Federated VLR against the pooled centralised baseline, on synthetic and give_credit data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crypto.he.interface import LrSuite
from crypto.he.lr_arbiter import CKKS_LR_SUITE
from crypto.he.lr_plain import PLAIN_LR_SUITE
from fedcredit.bench.vlr import run_vlr_benchmark, synthetic_vertical
from models.metrics import auc
from models.vlr import FeatureAlignment, VlrConfig
from models.vlr.arbiter import Arbiter
from models.vlr.centralized import pooled_design, train_centralized
from models.vlr.feature import FeatureParty
from models.vlr.label import LabelParty
from models.vlr.local import run_local

DATA = Path("/work/shared/data")
# train = test, as the data's README reference (plaintext SGD LR, AUC 0.699) does
GIVE_CREDIT = VlrConfig(learning_rate=0.5, batch_size=4096, max_epochs=5, validation_fraction=0.0)


def test_exact_and_taylor_baselines_both_learn_and_bank_only_is_narrower() -> None:
    data = synthetic_vertical(2000, 4, 6, seed=1)
    config = VlrConfig(batch_size=256, max_epochs=5)
    tables = [(data.host_table, data.alignment)]
    design, penalized = pooled_design(data.label_features, tables, config)
    bank, bank_penalized = pooled_design(data.label_features, [], config)
    assert design.shape == (2000, 11) and bank.shape == (2000, 5)
    assert not penalized[4] and penalized.sum() == 10  # the intercept is not penalised
    for taylor in (True, False):
        result = train_centralized(design, data.labels, penalized, config, taylor=taylor)
        assert result.reports[-1].auc > 0.75
    bank_only = train_centralized(bank, data.labels, bank_penalized, config)
    assert bank_only.reports[-1].auc < result.reports[-1].auc


def _give_credit() -> tuple[np.ndarray, np.ndarray, np.ndarray, FeatureAlignment]:
    if not (DATA / "give_credit_hetero_guest.csv").exists():
        pytest.skip("give_credit data not available")
    guest = np.genfromtxt(DATA / "give_credit_hetero_guest.csv", delimiter=",", skip_header=1)
    host = np.genfromtxt(DATA / "give_credit_hetero_host.csv", delimiter=",", skip_header=1)
    order = np.argsort(host[:, 0])
    own = order[np.searchsorted(host[order, 0], guest[:, 0])]
    assert np.array_equal(host[own, 0], guest[:, 0])
    n = guest.shape[0]
    return guest[:, 2:], guest[:, 1], host[:, 1:], FeatureAlignment(n, np.arange(n), own)


def _federated_auc(suite: LrSuite, config: VlrConfig) -> tuple[float, float]:
    x_label, y, host, alignment = _give_credit()
    label = LabelParty("gc", x_label, y, ["host"], config, suite=suite)
    party = FeatureParty("host", "gc", host, alignment, config, suite=suite)
    run_local(label, [party], Arbiter("gc", suite=suite))
    design, penalized = pooled_design(x_label, [(host, alignment)], config)
    pooled = train_centralized(design, y, penalized, config)
    federated = design @ np.concatenate([label.weights, party.weights])
    return auc(y, federated), auc(y, design @ pooled.weights)


def test_give_credit_twin_lands_on_the_centralised_baseline() -> None:
    config = GIVE_CREDIT.model_copy(update=dict(max_epochs=20))
    federated, centralised = _federated_auc(PLAIN_LR_SUITE, config)
    assert abs(federated - centralised) < 1e-4 and centralised > 0.69


@pytest.mark.slow
def test_give_credit_encrypted_lands_on_the_centralised_baseline() -> None:
    federated, centralised = _federated_auc(CKKS_LR_SUITE, GIVE_CREDIT)
    assert abs(federated - centralised) < 0.005 and federated > 0.68


def test_benchmark_reports_every_figure() -> None:
    report = run_vlr_benchmark(rows=600, label_features=3, host_features=5, batch_size=256)
    assert set(report) >= {
        "rows",
        "label_features",
        "host_features",
        "batch_size",
        "seconds_per_epoch",
        "seconds_per_epoch_plain",
        "ratio",
        "bytes_per_epoch",
        "auc",
    }
    assert report["ratio"] > 1 and report["bytes_per_epoch"] > 0 and report["auc"] > 0.6
    assert report["max_weight_gap"] < 1e-4

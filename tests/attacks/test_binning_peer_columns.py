"""A curious second feature node's whole transcript of a two-node binning job, attacked.

With two feature nodes and correlations asked for, F2 receives on top of a lone F's transcript
(the bank's public context, [y], the bank's merges, WOE and [WOE columns]) the first node's WOE
columns, quantised and encrypted under the bank's public BFV key. F2 may learn neither F1's
values nor the bank's labels (DESIGN §0/§5). The attacks, on a real encrypted run on give_credit:
* F1's values: per row the c0 coefficient that carries it in each of F1's encrypted columns,
  correlated with F1's true WOE column: |corr| must lie within 5 standard errors of 0 (1/sqrt(n)
  for a score independent of the column), and no best-threshold rule on it may predict the row's
  side of F1's median WOE better than chance + 0.01;
* labels: every vector F2 received (the bank's [y] and [WOE columns], F1's columns) scored the
  same way: AUC within 5 standard errors of a coin's, best-threshold accuracy at most the
  majority class + 0.01 (`test_binning_feature_node`'s bounds).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from crypto.he import BFV_SUITE, unpack_frames
from models.binning import BinningConfig
from models.binning.wire import BinsHead, unpack
from tests.attacks.test_binning_feature_node import (
    auc_null_sigma,
    best_threshold_accuracy,
    ciphertext_scores,
    majority,
)
from tests.unit.models.test_binning import give_credit
from tests.unit.models.test_binning_selection import federate_many

ROWS = 6000


@pytest.fixture(scope="module")
def credit() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return give_credit(ROWS)


def test_second_node_learns_nothing_of_the_first_nodes_columns_or_the_labels(
        credit: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    bank, y, host = credit
    tables = {"f1": host[:, :3], "f2": host[:, 3:]}
    config = BinningConfig(max_correlation=0.7, max_vif=10.0)
    run, _, features = federate_many(bank, y, tables, config, BFV_SUITE)
    seen: dict[str, list[bytes]] = {}
    for kind, data in run.payloads:
        seen.setdefault(kind, []).append(data)
    # F2's transcript: what reached it (context, [y], the bank's answer to it, F1's columns);
    # the second copy of each broadcast is F2's (the runtime serves f1 first)
    context, labels = seen["public_context"][1], seen["labels"][1]
    _, bank_vectors = unpack(seen["bins"][1], BinsHead, "bins")
    [columns] = seen["columns"]  # only f1 sends; only f2 receives
    f1_vectors = unpack_frames(columns)
    assert len(f1_vectors) == 3 and len(bank_vectors) == bank.shape[1]

    truth = features["f1"].transform(tables["f1"])
    n, sigma_r = y.size, 1 / np.sqrt(y.size)
    for j, vector in enumerate(f1_vectors):
        score = ciphertext_scores(context, vector, n, config.slots)
        for k in range(truth.shape[1]):
            if truth[:, k].std() == 0:
                continue
            r = np.corrcoef(score, truth[:, k])[0, 1]
            assert abs(r) < 5 * sigma_r, (j, k, r)
        above = (truth[:, j] > np.median(truth[:, j])).astype(np.float64)
        assert best_threshold_accuracy(score, above) <= majority(above) + 0.01

    base, sigma = majority(y), auc_null_sigma(y)
    for vector in [labels, *bank_vectors, *f1_vectors]:
        score = ciphertext_scores(context, vector, n, config.slots)
        assert abs(roc_auc_score(y, score) - 0.5) < 5 * sigma
        assert best_threshold_accuracy(score, y) <= base + 0.01

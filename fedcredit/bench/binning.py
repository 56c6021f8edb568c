"""`fedcredit bench binning`: WOE/IV binning encrypted and its plaintext twin, same data."""

from __future__ import annotations

import time
from typing import Any

from crypto.he import BFV_SUITE, PlainTwin, SbtSuite
from fedcredit.bench.vlr import SyntheticVertical, synthetic_vertical
from models.binning import BinningConfig
from models.binning.algorithm import ALGORITHM
from models.binning.feature import FeatureParty
from models.binning.label import LabelParty
from models.runtime import LocalRun, run_local


def _run(data: SyntheticVertical, config: BinningConfig, suite: SbtSuite,
         ) -> tuple[LocalRun, LabelParty, float]:
    started = time.perf_counter()
    label = LabelParty("bench", data.label_features, data.labels, ["host"], config, suite=suite)
    host = FeatureParty("host", "bench", data.host_table, data.alignment, config, suite=suite)
    run = run_local(ALGORITHM, ("bank", label), {"host": host}, config)
    return run, label, time.perf_counter() - started


def run_binning_benchmark(rows: int, label_features: int, host_features: int, *,
                          method: str = "optimal", bins: int = 20,
                          max_correlation: float | None = 0.7, seed: int = 0,
                          ) -> dict[str, Any]:
    """Seconds and bytes of one binning job (every host column binned, WOE/IV for all, selection)
    encrypted and with the plaintext twin in the same run, on the same synthetic data.

    L and F run one after another in this process, so the time is the sum of both parties' work
    (key generation included); bytes are everything that crosses between the parties."""
    data = synthetic_vertical(rows, label_features, host_features, seed)
    config = BinningConfig.model_validate({"method": method, "bins": bins,
                                           "max_correlation": max_correlation})
    encrypted, label, seconds = _run(data, config, BFV_SUITE)
    plain, twin, seconds_plain = _run(data, config, PlainTwin.suite_for_testing())
    same = all(a.iv == b.iv and (a.counts == b.counts).all()
               for a, b in zip(label.table, twin.table, strict=True))
    return {
        "rows": rows, "label_features": label_features, "host_features": host_features,
        "method": method, "bins": bins, "max_correlation": max_correlation,
        "seconds": round(seconds, 3), "seconds_plain": round(seconds_plain, 3),
        "ratio_to_plain": round(seconds / seconds_plain, 2),
        "bytes": int(sum(encrypted.bytes_by_message.values())),
        "bytes_plain": int(sum(plain.bytes_by_message.values())),
        "bytes_by_message": dict(encrypted.bytes_by_message),
        "selected": sum(c.selected for c in label.table),
        "characteristics": len(label.table),
        "same_tables_as_plain": same,
    }

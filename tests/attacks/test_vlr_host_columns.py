"""Attack 2 (issue 11): the bank rebuilds a feature node's columns from decrypted validation sums.

DESIGN §0: the bank must never recover a feature node's values from training or validation traffic.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.attacks.vlr_attacks import host_columns_r2
from tests.attacks.vlr_transcript import JobTranscript

KNOWN = 20  # enterprises whose true values at the feature node the bank knows


def _r2(job: JobTranscript) -> np.ndarray:
    host = job.feature.design[job.bank.validation]  # standardised columns: R² as for raw ones
    known = np.random.default_rng(5).choice(host.shape[0], size=KNOWN, replace=False)
    return host_columns_r2(job.bank.sums, host, known)


@pytest.mark.xfail(strict=True, reason="issue 11: today's bank decrypts every validation row's "
                                       "Σ_F u_F each epoch")
def test_the_bank_learns_no_host_column(vlr_jobs: dict[str, JobTranscript]) -> None:
    assert _r2(vlr_jobs["narrow"]).max() <= 0.1


# Deleted with the rewrite of issue 11: it proves the harness finds today's leak.


def test_host_column_attack_succeeds_on_the_old_protocol(
        vlr_jobs: dict[str, JobTranscript]) -> None:
    job = vlr_jobs["narrow"]
    assert job.bank.sums.shape[0] == 12  # one decrypted sum per validation row per epoch
    assert _r2(job).min() >= 0.999  # measured R² = 1.000 on each of the 5 columns

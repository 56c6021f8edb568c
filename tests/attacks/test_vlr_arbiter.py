"""Attack 3 (issue 11): what the coordinator decrypts, against the uniform masks meant to hide it.

DESIGN §0/§4.2: the coordinator decrypts only values masked to ≥ 40 bits of statistical hiding.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.attacks.vlr_attacks import MaskStats, arbiter_mask_stats
from tests.attacks.vlr_transcript import JobTranscript


def _stats(job: JobTranscript) -> MaskStats:
    answers = np.concatenate([b.answer for b in job.feature.batches])
    gradients = np.concatenate([b.gradient for b in job.feature.batches])
    return arbiter_mask_stats(answers, gradients, job.mask_bound)


def test_the_arbiter_decrypts_what_the_node_unmasks(vlr_jobs: dict[str, JobTranscript]) -> None:
    """The harness: the answers on the wire are the ones the curious node recorded."""
    for job in vlr_jobs.values():
        on_wire = np.concatenate(job.arbiter)
        recorded = np.concatenate([b.answer for b in job.feature.batches])
        assert np.array_equal(np.sort(on_wire), np.sort(recorded))


@pytest.mark.xfail(strict=True, reason="issue 11: masks of ±2^30 on sums up to ~1e4 hide only "
                                       "~18-27 bits")
def test_what_the_arbiter_decrypts_hides_40_bits(vlr_jobs: dict[str, JobTranscript]) -> None:
    for job in vlr_jobs.values():
        found = _stats(job)
        assert found.ks_pvalue > 0.01
        assert found.hiding_bits >= 40


# Deleted with the rewrite of issue 11: it measures today's hiding.


def test_arbiter_hiding_falls_short_on_the_old_protocol(
        vlr_jobs: dict[str, JobTranscript]) -> None:
    for job in vlr_jobs.values():
        found = _stats(job)
        # Indistinguishable at this sample size (a few thousand values) ...
        assert found.ks_pvalue > 0.01 and abs(found.correlation) < 0.1
        # ... but the worst value is only |g| / 2^31 from uniform: measured 27.7 (narrow) and
        # 26.6 (wide) bits; gradients summed over 4096 rows reach ~1e4, i.e. ~17.7 bits.
        assert 20 <= found.hiding_bits < 40

"""The bank's rows-per-weight floor (issue 11, after the wide node's final weights gave it every
label): a feature node's final weights are linear in the labels, so the bank refuses a job in
which any feature node has more weights than training rows / `min_rows_per_column` (its
`[floors]`, default 30), and a job asking for a lower `[vlr] min_rows_per_column` than that
floor. Both jobs run through the real processes of the capture (`vlr_transcript.REFUSED`).
"""

from __future__ import annotations

import pytest

from tests.attacks.vlr_transcript import REFUSED, WIDE, Capture

# The shared capture (~1-2 min) and the LP attacks on 9,000 unknowns land on whichever test runs
# first; on a loaded 2-core machine that exceeds the suite's 300 s default.
pytestmark = pytest.mark.timeout(1200)


@pytest.mark.parametrize("job", sorted(REFUSED))
def test_a_job_below_the_rows_per_column_floor_is_refused(vlr_capture: Capture, job: str,
                                                          ) -> None:
    """Through the real processes: the bank refuses a 300-column node on 6,000 training rows
    (6.7 per weight) at the check after open, and a job asking for a lower
    `min_rows_per_column` than its own floor at open; each refusal names the setting."""
    error = vlr_capture.refused[job]
    assert "min_rows_per_column" in error, error
    if "min_rows_per_column" in REFUSED[job]:
        assert error.startswith("bank refused step open"), error
        assert "[vlr] min_rows_per_column = 5 is below this node's minimum of 30" in error, error
    else:
        assert error.startswith("bank refused step check"), error
        assert (f"feature node wide has {WIDE} weights: 6000 training rows are fewer than 30 per "
                "weight ([vlr] min_rows_per_column = 30)") in error, error

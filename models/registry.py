"""Every algorithm fedcredit runs, by name: the one place that lists them."""

from __future__ import annotations

from common.errors import ProtocolError
from models.binning.algorithm import ALGORITHM as BINNING
from models.protocol import Algorithm
from models.sbt.algorithm import ALGORITHM as SBT
from models.scorecard.algorithm import ALGORITHM as SCORECARD
from models.vlr.algorithm import ALGORITHM as VLR

ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (VLR, SBT, BINNING, SCORECARD)}


def algorithm(name: str) -> Algorithm:
    """The declared algorithm called `name`, or a ProtocolError listing the known ones."""
    found = ALGORITHMS.get(name)
    if found is None:
        raise ProtocolError(f"unknown algorithm {name!r}: expected one of "
                            f"{', '.join(sorted(ALGORITHMS))}")
    return found

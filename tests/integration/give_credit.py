"""The public give_credit data (FATE's hetero split) as a bank and one feature node, `host`."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedcredit.launcher import PartySpec

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
GUEST = DATA / "give_credit_hetero_guest.csv"  # id, y, x0..x4
HOST = DATA / "give_credit_hetero_host.csv"  # id, x0..x4


def give_credit_specs() -> list[PartySpec]:
    """bank = guest (x0..x4 + y), host = the feature node (x0..x4); skips without the data."""
    if not GUEST.exists():
        pytest.skip("../shared/data is not beside this checkout")
    return [PartySpec("bank", "label", {"source": "csv", "id_format": "any", "label_column": "y",
                                        "path": str(GUEST)}),
            PartySpec("host", "feature", {"source": "csv", "id_format": "any",
                                          "path": str(HOST)})]

"""The demo's parties on a synthetic chain: the bank (label) and three feature holders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedcredit.launcher import PartySpec
from fedcredit.synth import SynthResult

LABEL_PARTY = "bank"
FEATURE_PARTIES = ("core", "logistics", "tax")


def party_specs(synth: SynthResult) -> list[PartySpec]:
    """Node specs for the bank (label) and the three feature holders of a synthetic chain."""
    specs = []
    for name in (LABEL_PARTY, *FEATURE_PARTIES):
        part = synth.parties[name]
        data: dict[str, Any] = {"source": "csv", "path": str(Path(part.path).resolve()),
                                "id_column": part.id_column, "id_format": "uscc",
                                "features": list(part.feature_columns)}
        if part.label_column:
            data["label_column"] = part.label_column
        specs.append(PartySpec(name=name, role="label" if name == LABEL_PARTY else "feature",
                               data=data))
    return specs

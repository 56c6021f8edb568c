"""The demo's parties on a synthetic chain: the bank (label) and three feature holders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedcredit.launcher import PartySpec
from fedcredit.synth import SynthResult

LABEL_PARTY = "bank"
FEATURE_PARTIES = ("core", "logistics", "tax")


def _limit(column: str, change: str, yellow: float, orange: float, red: float,
           direction: str = "down") -> dict[str, Any]:
    return {"column": column, "change": change, "direction": direction, "yellow": yellow,
            "orange": orange, "red": red}


MONITORING: dict[str, dict[str, Any]] = {
    # Each feature holder's own early-warning limits (its `[monitoring]` table): orders,
    # shipments and invoices falling (relative), punctuality and trends falling, receivables
    # lengthening (absolute).
    "core": {"limits": [_limit("order_count", "relative", 0.35, 0.5, 0.6),
                        _limit("payment_punctuality", "absolute", 0.12, 0.18, 0.24),
                        _limit("receivable_days", "absolute", 18.0, 26.0, 34.0, "up"),
                        _limit("order_volume_trend", "absolute", 0.2, 0.3, 0.38)]},
    "logistics": {"limits": [_limit("shipment_count", "relative", 0.35, 0.45, 0.55),
                             _limit("on_time_rate", "absolute", 0.12, 0.2, 0.28),
                             _limit("volume_trend", "absolute", 0.2, 0.3, 0.38)]},
    "tax": {"limits": [_limit("invoices_issued", "relative", 0.35, 0.45, 0.55),
                       _limit("tax_paid_log", "absolute", 0.25, 0.35, 0.45),
                       _limit("filing_punctuality", "absolute", 0.15, 0.25, 0.35),
                       _limit("tax_credit_grade", "absolute", 1.0, 2.0, 3.0)]},
}


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
        settings = {"monitoring": MONITORING[name]} if name in MONITORING else {}
        specs.append(PartySpec(name=name, role="label" if name == LABEL_PARTY else "feature",
                               data=data, settings=settings))
    return specs

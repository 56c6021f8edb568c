"""A seeded change of the synthetic chain's feature tables: some SMEs deteriorate (orders
fall, shipments run late, tax filings go overdue), some improve, everyone drifts a little.

Rewrites the feature parties' CSV files in place, as a feature node's source would change
between two reads; the bank's file and the segments are left as they are. The same arguments
give the same files.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedcredit.synth import ID_COLUMN, _csv_column, _stream, _write_csv

# column -> (shift if deteriorated, shift if improved, drift scale for everyone); counts and
# log amounts are multiplied by exp(shift) (log10 columns: shift added), ratios get shift added.
SHIFTS: dict[str, tuple[float, float, float]] = {
    "order_count": (-1.0, 0.3, 0.08),
    "payment_punctuality": (-0.25, 0.05, 0.02),
    "receivable_days": (35.0, -10.0, 3.0),
    "order_volume_trend": (-0.4, 0.15, 0.03),
    "shipment_count": (-0.9, 0.3, 0.08),
    "on_time_rate": (-0.3, 0.05, 0.02),
    "volume_trend": (-0.4, 0.15, 0.03),
    "invoices_issued": (-0.9, 0.3, 0.08),
    "tax_paid_log": (-0.5, 0.15, 0.04),
    "filing_punctuality": (-0.4, 0.05, 0.02),
    "tax_credit_grade": (-2.0, 1.0, 0.0),
}
MULTIPLIED = ("order_count", "shipment_count", "invoices_issued")
RATIOS = ("payment_punctuality", "on_time_rate", "filing_punctuality")


@dataclass(frozen=True)
class Shift:
    """Which SMEs were changed (all ids of the chain, as in segments.csv)."""

    deteriorated: list[str]
    improved: list[str]
    rewritten: list[Path]


def _read(path: Path) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    cells = np.asarray(rows, dtype=object).reshape(len(rows), len(header))
    ids = [str(i) for i in cells[:, header.index(ID_COLUMN)]]
    columns = {}
    for j, name in enumerate(header):
        if name != ID_COLUMN:
            raw = cells[:, j].astype(str)
            columns[name] = np.where(raw == "", "nan", raw).astype(np.float64)
    return header, ids, columns


def _changed(name: str, values: np.ndarray, shift: np.ndarray) -> np.ndarray:
    out: np.ndarray
    if name in MULTIPLIED:
        out = np.round(values * np.exp(shift))
    elif name in RATIOS:
        out = np.clip(values + shift, 0.0, 1.0)
    elif name == "tax_credit_grade":
        out = np.clip(np.round(values + shift), 1, 5)
    elif name == "receivable_days":
        out = np.maximum(5.0, np.round(values + shift))
    else:
        out = values + shift
    return out


def shift_chain(out_dir: Path, *, deteriorate: float = 0.05, improve: float = 0.05,
                seed: int = 7, parties: Sequence[str] = ("core", "logistics", "tax"),
                among: Sequence[str] | None = None) -> Shift:
    """Deteriorate a share of SMEs (of `among`, default every SME in segments.csv), improve
    another share, drift all, in the named parties' files under `out_dir`."""
    with (out_dir / "segments.csv").open(newline="") as f:
        everyone = [row[ID_COLUMN] for row in csv.DictReader(f)]
    pool = np.asarray(sorted(among) if among is not None else everyone)
    rng = _stream(seed, "shift")
    order = rng.permutation(pool.size)
    n_bad, n_good = int(round(deteriorate * pool.size)), int(round(improve * pool.size))
    bad, good = set(pool[order[:n_bad]]), set(pool[order[n_bad:n_bad + n_good]])
    rewritten = []
    for party in parties:
        path = out_dir / f"{party}.csv"
        header, ids, columns = _read(path)
        is_bad = np.fromiter((i in bad for i in ids), dtype=bool, count=len(ids))
        is_good = np.fromiter((i in good for i in ids), dtype=bool, count=len(ids))
        noise = _stream(seed, f"shift:{party}")
        for name in columns:
            if name not in SHIFTS:
                continue
            worse, better, drift = SHIFTS[name]
            shift = noise.normal(scale=drift, size=len(ids)) if drift else np.zeros(len(ids))
            shift = shift + np.where(is_bad, worse, 0.0) + np.where(is_good, better, 0.0)
            columns[name] = _changed(name, columns[name], shift)
        data = [np.asarray(ids)] + [_csv_column(columns[h]) for h in header if h != ID_COLUMN]
        _write_csv(path, header, data)
        rewritten.append(path)
    return Shift(deteriorated=sorted(bad), improved=sorted(good), rewritten=rewritten)

"""Synthetic supply chain: SMEs around core enterprises, each party seeing a part of them."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from common.uscc import generate_uscc

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.str_]

ID_COLUMN = "id"
LABEL_COLUMN = "default"
SEGMENTS_FILE = "segments.csv"

# Column name -> (party, meaning, unit). The order here is the column order in the files.
COLUMNS: dict[str, tuple[str, str, str]] = {
    "years_with_bank": ("bank", "years since the SME opened its account at the bank", "years"),
    "loan_count": ("bank", "loans taken from the bank so far (0 for credit-white)", "count"),
    "past_overdue_count": ("bank", "loans or instalments ever overdue", "count"),
    "max_overdue_days": ("bank", "longest overdue spell on any loan", "days"),
    "utilisation": ("bank", "drawn amount / granted credit line, last 12 months", "ratio 0-1"),
    "collateral_ratio": ("bank", "collateral value / outstanding loans", "ratio"),
    "deposit_balance_log": ("bank", "average deposit balance, last 12 months", "log10 yuan"),
    "order_count": ("core", "orders with the core enterprise, last 12 months", "count"),
    "payment_punctuality": ("core", "share of invoices settled by the due date", "ratio 0-1"),
    "receivable_days": ("core", "average days sales outstanding with the core enterprise", "days"),
    "relationship_years": ("core", "years trading with the core enterprise", "years"),
    "order_volume_trend": ("core", "order value, last 12 months / 12 before - 1", "ratio"),
    "shipment_count": ("logistics", "shipments handled for the SME, last 12 months", "count"),
    "on_time_rate": ("logistics", "share of shipments dispatched on the agreed date", "ratio 0-1"),
    "volume_trend": ("logistics", "shipped volume, last 6 months / 6 before - 1", "ratio"),
    "route_diversity": ("logistics", "distinct origin-destination routes, last 12 months", "count"),
    "invoices_issued": ("tax", "VAT invoices issued, last 12 months", "count"),
    "tax_paid_log": ("tax", "taxes paid, last 12 months (plus 1 yuan)", "log10 yuan"),
    "filing_punctuality": ("tax", "share of returns filed on time, last 24 months", "ratio 0-1"),
    "tax_credit_grade": ("tax", "tax-credit grade: 5=A, 4=B, 3=M, 2=C, 1=D", "grade 1-5"),
}
BANK_HISTORY = ("past_overdue_count", "max_overdue_days", "utilisation", "collateral_ratio")
"""Bank columns that are empty for credit-white SMEs (no loan ever taken)."""
PARTY_DESCRIPTIONS = {
    "bank": "The bank (label holder): its own customers, with loan history where there is one. "
    "Credit-white customers (never borrowed) have empty history columns. With several banks, "
    "each bank file covers a disjoint set of customers and has the same columns.",
    "core": "The core enterprises (one table for all their chains): SMEs they buy from "
    "or sell through.",
    "logistics": "The logistics firm: SMEs whose goods it ships.",
    "tax": "The tax platform: SMEs whose invoices and returns it sees.",
}
PARTY_NAMES = ("bank", "core", "logistics", "tax")
TIER_SHARES = (0.2, 0.35, 0.45)
"""Shares of SMEs at tiers 1, 2, 3 (deeper tiers are smaller and more numerous)."""
BANK_COVERAGE_BY_TIER = (0.8, 0.65, 0.58)
"""Chance that an SME at tier 1, 2, 3 is a bank customer (about 65% overall)."""
CREDIT_WHITE_BY_TIER = (0.1, 0.38, 0.58)
"""Chance that an SME at tier 1, 2, 3 has never borrowed (about 40% overall)."""
BANK_NOISE_BY_TIER = (0.15, 0.75, 1.1)
"""Noise on the bank's view of an SME: thin files for SMEs far from the core enterprise."""
COVERAGE = {"core": 0.8, "logistics": 0.65, "tax": 0.85}
SPORADIC_MISSING = 0.03
"""Share of cells left empty at random in every feature column (entry errors, late feeds)."""


@dataclass(frozen=True)
class PartyFile:
    """One party's table: where it is and what its columns mean."""

    path: Path
    id_column: str
    label_column: str | None
    feature_columns: list[str]
    rows: int


@dataclass(frozen=True)
class SynthResult:
    """What ``synthesize`` wrote: one file per party plus the evaluation-only segments."""

    out_dir: Path
    parties: dict[str, PartyFile]
    segments_path: Path


def _stream(seed: int, purpose: str) -> np.random.Generator:
    """A generator of its own per purpose: splitting among banks leaves every other draw as is."""
    return np.random.default_rng([seed, zlib.crc32(purpose.encode("ascii"))])


def _f64(x: npt.ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def _sigmoid(x: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-x))


def _draw(
    rng: np.random.Generator, tier: IntArray, dealer: BoolArray, white: BoolArray
) -> tuple[IntArray, dict[str, FloatArray]]:
    """Draw every SME's latent health, its default, and what each party records about it."""
    n = tier.size
    t = tier - 2.0  # -1, 0, 1 for tiers 1, 2, 3
    size = rng.normal(-0.6 * t, 1.0)
    z_op = rng.normal(size=n)  # operations: orders, deliveries
    z_fin = rng.normal(size=n)  # finances and compliance
    z_cred = rng.normal(size=n)  # liquidity and repayment behaviour
    z_idio = rng.normal(size=n)  # shocks no party observes
    health = 0.55 * z_op + 0.5 * z_fin + 0.55 * z_cred + 0.25 * z_idio + 0.12 * size - 0.2 * t
    default = (rng.random(n) < _sigmoid(-3.2 - 1.8 * health)).astype(np.int64)

    def noisy(x: FloatArray, scale: float) -> FloatArray:
        return x + rng.normal(scale=scale, size=n)

    f: dict[str, FloatArray] = {}
    # Bank: loan history reflects the whole firm, through thinner files the further from the core.
    cred = 0.9 * z_cred + 0.2 * z_fin + 0.2 * z_op
    cred = cred + rng.normal(size=n) * np.take(BANK_NOISE_BY_TIER, tier - 1)
    years = np.where(white, rng.gamma(1.2, 0.8, n), rng.gamma(2.0, 3.0 + 0.4 * size.clip(-2, 2)))
    f["years_with_bank"] = _f64(np.round(years, 1))
    loans = 1.0 + rng.poisson(np.exp(0.8 + 0.3 * size - 0.2 * t))
    f["loan_count"] = np.where(white, 0.0, loans)
    f["past_overdue_count"] = rng.poisson(np.exp(-0.8 - 0.9 * cred)).astype(np.float64)
    spell = 1.0 + np.round(rng.gamma(1.5, np.exp(2.6 - 0.5 * cred)))
    f["max_overdue_days"] = np.where(f["past_overdue_count"] > 0, spell, 0.0)
    f["utilisation"] = _sigmoid(noisy(0.3 - 0.8 * cred, 0.6))
    f["collateral_ratio"] = np.exp(noisy(0.1 * size + 0.1 * cred, 0.5))
    for col in BANK_HISTORY:
        f[col][white] = np.nan
    f["deposit_balance_log"] = noisy(5.5 + 0.45 * size + 0.1 * z_fin + 0.05 * z_cred, 0.45)
    # Core enterprise: orders, settlement and receivables within its chain.
    f["order_count"] = _f64(rng.poisson(np.exp(3.0 + 0.35 * size + 0.25 * z_op - 0.3 * t)))
    pay = np.where(dealer, 0.6 * z_cred + 0.6 * z_op, 0.4 * z_cred + 0.7 * z_op)
    f["payment_punctuality"] = _sigmoid(noisy(1.8 + 0.9 * pay, 0.4))
    f["receivable_days"] = np.maximum(5.0, np.round(noisy(65 + 8 * t - 14 * z_op, 12.0)))
    relationship = rng.gamma(2.5, 1.6 - 0.3 * t + 0.2 * z_op.clip(-2, 2))
    f["relationship_years"] = _f64(np.round(relationship, 1))
    f["order_volume_trend"] = noisy(0.04 + 0.12 * z_op + 0.04 * z_fin, 0.1)
    # Logistics: the physical flow of goods.
    f["shipment_count"] = _f64(rng.poisson(np.exp(3.5 + 0.4 * size + 0.25 * z_op)))
    f["on_time_rate"] = _sigmoid(noisy(2.0 + 0.7 * z_op, 0.5))
    f["volume_trend"] = noisy(0.03 + 0.1 * z_op, 0.15)
    f["route_diversity"] = _f64(1 + rng.poisson(np.exp(1.0 + 0.3 * size + 0.1 * z_op)))
    # Tax platform: invoicing, taxes and compliance.
    f["invoices_issued"] = _f64(rng.poisson(np.exp(4.2 + 0.5 * size + 0.15 * z_fin)))
    f["tax_paid_log"] = noisy(5.0 + 0.5 * size + 0.3 * z_fin, 0.35)
    f["filing_punctuality"] = _sigmoid(noisy(2.2 + 0.9 * z_fin, 0.5))
    grade_score = noisy(z_fin + 0.3 * z_cred, 0.5)
    f["tax_credit_grade"] = _f64(1 + np.searchsorted([-1.9, -1.2, -0.5, 0.6], grade_score))
    for values in f.values():
        values[rng.random(n) < SPORADIC_MISSING] = np.nan
    return default, f


def _csv_column(values: FloatArray) -> StrArray:
    """Format floats with 6 significant digits; NaN becomes an empty cell."""
    out = np.char.mod("%.6g", values)
    out[np.isnan(values)] = ""
    return out


def _write_csv(path: Path, header: list[str], columns: list[StrArray]) -> None:
    lines = [",".join(header)]
    lines.extend(",".join(row) for row in zip(*columns, strict=True))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def _write_columns_md(path: Path, parties: dict[str, PartyFile]) -> None:
    lines = [
        "# Synthetic supply-chain data: columns",
        "",
        f"Every party file has an `{ID_COLUMN}` column: the SME's Unified Social Credit Code",
        "(GB 32100-2015). Rows exist only for the SMEs the party covers. Empty cells are missing",
        "values. Every feature is a number; counts, days and grades are whole numbers.",
        "",
    ]
    for name, party in parties.items():
        owner = "bank" if name.startswith("bank") else name
        lines += [f"## {party.path.name} ({party.rows} rows)", "", PARTY_DESCRIPTIONS[owner], ""]
        lines += ["| column | meaning | unit |", "|---|---|---|"]
        lines.append(f"| `{ID_COLUMN}` | Unified Social Credit Code of the SME | 18 characters |")
        if party.label_column:
            lines.append(
                f"| `{party.label_column}` | defaulted (90+ days overdue) within the 12-month "
                "outcome window: 1, else 0 | 0/1 |"
            )
        for col in party.feature_columns:
            _, meaning, unit = COLUMNS[col]
            lines.append(f"| `{col}` | {meaning} | {unit} |")
        lines.append("")
    lines += [
        f"## {SEGMENTS_FILE} (ground truth for evaluation only; never served by a node)",
        "",
        "| column | meaning | unit |",
        "|---|---|---|",
        f"| `{ID_COLUMN}` | Unified Social Credit Code of the SME | 18 characters |",
        "| `core` | core enterprise whose chain the SME belongs to | 1..number of cores |",
        "| `tier` | distance from the core enterprise in the chain | 1, 2, 3 |",
        "| `role` | position relative to the core enterprise | supplier / dealer |",
        "| `credit_white` | no loan history at any bank (bank history columns empty) | 0/1 |",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8", newline="\n")


def synthesize(
    out_dir: Path, enterprises: int = 20000, seed: int = 7, banks: int = 1
) -> SynthResult:
    """Write a seeded synthetic supply chain of ``enterprises`` SMEs to ``out_dir``.

    Files: ``bank.csv`` (or ``bank_1.csv`` .. ``bank_K.csv`` with disjoint customers when
    ``banks`` > 1), ``core.csv``, ``logistics.csv``, ``tax.csv``, ``segments.csv``,
    ``columns.md`` and ``parties.json``. The same arguments give byte-identical files.
    """
    if enterprises < 1:
        raise ValueError(f"enterprises must be at least 1, got {enterprises}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if banks < 1:
        raise ValueError(f"banks must be at least 1, got {banks}")
    rng = np.random.default_rng(seed)
    n = enterprises
    ids = np.array(generate_uscc(rng, n))
    n_cores = max(3, n // 4000)
    core = rng.integers(1, n_cores + 1, size=n)
    tier = 1 + rng.choice(3, size=n, p=TIER_SHARES)
    dealer = rng.random(n) < 0.35
    white = rng.random(n) < np.take(CREDIT_WHITE_BY_TIER, tier - 1)
    default, feats = _draw(rng, tier, dealer, white)

    covered = {"bank": rng.random(n) < np.take(BANK_COVERAGE_BY_TIER, tier - 1)}
    for party, share in COVERAGE.items():
        covered[party] = rng.random(n) < share
    bank_of = _stream(seed, f"split:{banks}").integers(1, banks + 1, size=n)

    out_dir.mkdir(parents=True, exist_ok=True)
    tables: list[tuple[str, str, BoolArray]] = []  # (party name, owner party, row mask)
    if banks == 1:
        tables.append(("bank", "bank", covered["bank"]))
    else:
        tables += [
            (f"bank_{k}", "bank", covered["bank"] & (bank_of == k)) for k in range(1, 1 + banks)
        ]
    tables += [(p, p, covered[p]) for p in PARTY_NAMES[1:]]

    parties: dict[str, PartyFile] = {}
    for name, owner, mask in tables:
        # Each party lists its rows in its own order, drawn from its own stream.
        rows = _stream(seed, f"order:{name}").permutation(np.flatnonzero(mask))
        cols = [c for c, (p, _, _) in COLUMNS.items() if p == owner]
        label = LABEL_COLUMN if owner == "bank" else None
        header = [ID_COLUMN] + ([LABEL_COLUMN] if label else []) + cols
        data = [ids[rows]]
        if label:
            data.append(default[rows].astype(str))
        data += [_csv_column(feats[c][rows]) for c in cols]
        path = out_dir / f"{name}.csv"
        _write_csv(path, header, data)
        parties[name] = PartyFile(path, ID_COLUMN, label, cols, int(rows.size))

    segments_path = out_dir / SEGMENTS_FILE
    _write_csv(
        segments_path,
        [ID_COLUMN, "core", "tier", "role", "credit_white"],
        [
            ids,
            core.astype(str),
            tier.astype(str),
            np.where(dealer, "dealer", "supplier"),
            white.astype(np.int64).astype(str),
        ],
    )
    _write_columns_md(out_dir / "columns.md", parties)
    manifest = {
        "enterprises": n,
        "seed": seed,
        "banks": banks,
        "core_enterprises": n_cores,
        "segments": SEGMENTS_FILE,
        "parties": {
            name: {
                "path": p.path.name,
                "id_column": p.id_column,
                "label_column": p.label_column,
                "feature_columns": p.feature_columns,
                "rows": p.rows,
            }
            for name, p in parties.items()
        },
    }
    (out_dir / "parties.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return SynthResult(out_dir=out_dir, parties=parties, segments_path=segments_path)

"""Federated WOE/IV binning and characteristic selection: settings and the design.

One file per role: `feature.py` (F: bins its own columns, sums the bank's encrypted labels per bin,
keeps its edges and WOE table), `label.py` (L: decrypts per-bin event counts, runs the optimal
merge, WOE/IV for every party, selection); `bins.py` the bin arithmetic, `optimal.py` the one
wrapper of optbinning, `select.py` IV/correlation selection, `wire.py` the bytes steps carry,
`algorithm.py` the steps and driver. The crypto is SecureBoost's BFV coefficient packing
(`crypto.he.bfv`): one encrypted label vector, per-bin sums computed by F without decrypting.

Protocol (one job; every node-to-node part sealed by the transport):
  L.labels      fresh BFV keys; [y] packed over the job's training rows -> every F
  F.prebins     F bins its own columns on its aligned rows (quantile; `bins` of them, or pre-bins
                for the optimal method), merges bins below its floor (label-free), answers per
                slot its row counts in the clear and [sum of y] per slot (flooded, re-randomised)
  L.merge       decrypts event counts; optimal method: optbinning's optimal/monotonic merge run
                on the counts (`optimal.py`) -> boundary flags; WOE/IV per bin for its own columns
                (in the clear) and F's; sends F its merge flags, its bins' WOE (`share_woe`) and,
                for correlation filtering, [L's WOE columns] (quantised, BFV)
  F.finish      applies the merges; keeps its `ColumnBins` (edges, slot map, WOE) as its model;
                within-F correlation of its WOE columns -> only the pairs above the threshold
                (with `max_vif`: the whole matrix); per (L column, F column) the per-bin sums of
                [L's WOE column] with a mask m, sum_b w_b m_b = 0 mod t (w_b: F's quantised
                WOE): L can decode sum_b w_b S_b (the inner product of the two WOE columns) and
                nothing else of the per-bin sums. With two or more feature nodes, F also sends
                [its quantised WOE columns] under L's public key to every feature node whose
                name sorts after its own (sealed, `To.PEERS`)
  F2.cross      (two or more feature nodes) the same masked per-bin sums of each earlier F1's
                [WOE columns] over F2's bins: L decodes one inner product per (F1, F2) column
                pair; each unordered pair of nodes is computed once
  L.select      IV threshold, then greedy correlation filter in IV order over every known pair
                (L's own, within-F, L-F, F-F); then, with `max_vif`, VIF_j = [R^-1]_jj over the
                remaining columns' full correlation matrix, dropping the highest above the limit
                one at a time (ties: lowest IV); R is regularised when singular (`select.py`);
                the IV table (with selection, reasons and VIFs) is L's stored summary and the
                job's report
What each party learns (DESIGN §0/§5 applied to binning):
  F: ciphertexts; its own final bins (the merges, as SecureBoost's F learns its thresholds) and,
     with `share_woe` (default, needed to WOE-encode its columns for a WOE scorecard), its bins'
     WOE: its part of the final model, like its final weights in vertical LR. Never a row's label.
  L: per-slot row and event counts of F's columns, every non-empty slot >= F's own floor
     `[floors] min_bin_rows` (a job asking for less is refused at open and audited; the floor
     merges F made are audited at F); bin indices ("bin 3"), never edges; F's column names; the
     within-F pairs above the correlation threshold; one inner product per (L, F) column pair
     and per (F1, F2) column pair of two feature nodes. Only when a job asks for VIF, each F's
     correlation matrix of its own WOE columns: aggregate second-order statistics of F's own
     WOE-encoded columns, the same kind as the pairs above the threshold it already shares. A
     feature node that will not share it sets `[floors] share_correlations = false` and refuses
     every job with `max_vif` at open (audited `train.refused`).
  F2 (another feature node): F1's quantised WOE columns encrypted under L's key, which it cannot
     decrypt (attacked in tests/attacks/test_binning_peer_columns.py); nothing goes back to F1.
  coordinator: sealed bytes; the IV table (IV per characteristic, bins, selected, VIF) as job
     metrics.
Left out (documented, not silently weaker): a bank comparing two jobs with different `bins` can
difference overlapping bins.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_VALUE_BINS = 126  # slots = bins + 2 <= 128 keeps >= 64 rows per histogram ciphertext
WOE_BITS = 10  # quantisation of WOE values for the encrypted inner products
OFF = "off"  # TOML has no null: `max_correlation = "off"` in a job file is None (off)


class BinningConfig(BaseModel):
    """The `[binning]` table of a job file; a key not listed here is refused by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["quantile", "optimal"] = "optimal"
    bins: int = 20  # quantile bins, or pre-bins of the optimal method
    monotonic_trend: str | None = "auto_asc_desc"  # optbinning's monotonic_trend (optimal)
    max_n_bins: int | None = None  # optbinning's max_n_bins (optimal)
    min_bin_rows: int = Field(default=128, ge=1)  # >= every feature node's floor
    special_codes: tuple[float, ...] = ()  # values binned apart from the others (e.g. -999)
    share_woe: bool = True  # the bank sends F its bins' WOE (F can WOE-encode its columns)
    min_iv: float = 0.02  # selection: characteristics below this IV are dropped
    max_correlation: float | None = 0.7  # selection: |r| above this drops the lower IV; None off
    max_vif: float | None = None  # selection: then drop the highest VIF above this; None off

    @field_validator("monotonic_trend", "max_n_bins", "max_correlation", "max_vif", mode="before")
    @classmethod
    def _off(cls, value: object) -> object:
        """`"off"` (what a TOML job file can write) switches an optional setting off, as null does
        in JSON."""
        return None if value == OFF else value

    @model_validator(mode="after")
    def _consistent(self) -> BinningConfig:
        problems = []
        if not 2 <= self.bins <= MAX_VALUE_BINS:
            problems.append(f"bins {self.bins} must be 2..{MAX_VALUE_BINS}")
        if self.max_n_bins is not None and self.max_n_bins < 2:
            problems.append(f"max_n_bins {self.max_n_bins} must be >= 2")
        if not (math.isfinite(self.min_iv) and self.min_iv >= 0):
            problems.append(f"min_iv {self.min_iv} must be >= 0")
        if self.max_correlation is not None and not 0 < self.max_correlation <= 1:
            problems.append(f"max_correlation {self.max_correlation} must be in (0, 1]")
        if self.max_correlation is not None and not self.share_woe:
            problems.append("max_correlation needs share_woe: a feature node WOE-encodes its "
                            "own columns for the correlations")
        if self.max_vif is not None and not (math.isfinite(self.max_vif) and self.max_vif > 1):
            problems.append(f"max_vif {self.max_vif} must be a number > 1 (a VIF is >= 1)")
        if self.max_vif is not None and not self.share_woe:
            problems.append("max_vif needs share_woe: a feature node WOE-encodes its own "
                            "columns for the correlations")
        if any(not math.isfinite(c) for c in self.special_codes):
            problems.append("special_codes must be finite numbers (NaN is always missing)")
        allowed = (None, "auto", "auto_heuristic", "auto_asc_desc", "ascending", "descending",
                   "concave", "convex", "peak", "valley", "peak_heuristic", "valley_heuristic")
        if self.monotonic_trend not in allowed:
            problems.append(f"monotonic_trend {self.monotonic_trend!r} is not one of optbinning's")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def rounds(self) -> int:
        """A binning job is one pass (the job runner's progress counts rounds)."""
        return 1

    @property
    def correlations(self) -> bool:
        """Whether the job computes correlations across parties (for the filter or for VIF)."""
        return self.max_correlation is not None or self.max_vif is not None

    @property
    def slots(self) -> int:
        """Slots per column: value bins, one special slot, one missing slot."""
        return self.bins + 2


__all__ = ["MAX_VALUE_BINS", "WOE_BITS", "BinningConfig"]

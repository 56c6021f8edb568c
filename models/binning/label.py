"""Label party L of federated binning: encrypted labels out, per-bin counts in, WOE/IV, selection.

L bins its own columns in the clear; for a feature node's columns it learns per-slot row counts
(from F) and event counts (decrypted), decides the optimal merges by optbinning on those counts,
and computes WOE and IV. It refers to F's bins by index only. With a correlation threshold or a
VIF limit it sends its own WOE columns encrypted and decodes one inner product per (own, F) column
pair, and one per (F1, F2) column pair of two feature nodes (F2's masked sums of F1's encrypted
columns); with a VIF limit each F also sends its own columns' correlation matrix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.errors import ProtocolError
from crypto.he import BFV_SUITE, LabelHe, SbtSuite
from models.binning import WOE_BITS, BinningConfig
from models.binning.bins import ColumnBins, bin_column, slot_counts, slot_labels, woe_iv
from models.binning.feature import MODEL_SCHEMA
from models.binning.optimal import optimal_merges
from models.binning.select import Characteristic, pearson, select, vif_filter
from models.binning.wire import (
    BinsHead,
    CorrelationHead,
    CrossHead,
    PrebinsHead,
    decode_counts,
    pack,
    unpack,
)
from models.labels import labelled_table


@dataclass
class _Party:
    """What L holds of one feature node's columns."""

    columns: list[str]
    counts: np.ndarray  # (columns, slots) final row counts
    events: np.ndarray  # (columns, slots) final event counts
    woe: np.ndarray  # (columns, slots)

    def moments(self, column: int, n: float) -> tuple[np.ndarray, float, float]:
        """A column's quantised WOE per slot (as F encodes it), its mean and variance over rows."""
        w = np.rint(self.woe[column] * 2**WOE_BITS).astype(np.int64)
        mean = float(self.counts[column] @ w) / n
        return w, mean, float(self.counts[column] @ (w.astype(np.float64) ** 2)) / n - mean**2


class LabelParty:
    """The bank's side of a binning job. Steps: labels -> merge -> select."""

    def __init__(self, job: str, features: np.ndarray, labels: np.ndarray,
                 feature_parties: Sequence[str], config: BinningConfig, *,
                 columns: tuple[str, ...] = (), party: str = "bank",
                 suite: SbtSuite = BFV_SUITE) -> None:
        features, labels = labelled_table(features, labels)
        self.job, self.config, self.labels = job, config, labels.astype(np.int64)
        self.party = party
        self.columns = columns or tuple(f"x{j}" for j in range(features.shape[1]))
        self.feature_parties = tuple(sorted(feature_parties))
        self._features, self._suite = features, suite
        self._he: LabelHe | None = None
        self.own: list[ColumnBins] = []
        self._own_counts = np.zeros((0, config.slots), np.int64)
        self._own_events = np.zeros((0, config.slots), np.int64)
        self._quantised: np.ndarray | None = None
        self.parties: dict[str, _Party] = {}
        self.table: list[Characteristic] = []
        self.correlations: dict[tuple[str, str], float] = {}

    @property
    def n_rows(self) -> int:
        return int(self.labels.size)

    @property
    def he(self) -> LabelHe:
        if self._he is None:
            raise ProtocolError("label party not opened yet")
        return self._he

    def open(self) -> tuple[bytes, bytes]:
        """Fresh BFV keys; the public context and [y] over the training rows, for every F."""
        self._he = self._suite.make_private()
        encrypted = self._he.encrypt_chunks(self.labels.astype(np.uint64), self.config.slots)
        return self._he.public_bytes(), encrypted

    def _final(self, nonevent: np.ndarray, event: np.ndarray, value_bins: int,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(kept boundary flags, final counts, final events) of one column's slots."""
        cfg, k = self.config, value_bins
        if cfg.method == "optimal" and k > 1:
            kept = optimal_merges(nonevent[:k], event[:k], monotonic_trend=cfg.monotonic_trend,
                                  max_n_bins=cfg.max_n_bins, min_bin_rows=cfg.min_bin_rows)
        else:
            kept = np.ones(max(k - 1, 0), dtype=bool)
        group = np.concatenate([[0], np.cumsum(kept)])  # pre-bin -> final value bin
        index = np.concatenate([group, np.arange(k, cfg.slots)])
        counts = np.bincount(index, (nonevent + event)[: index.size], minlength=cfg.slots)
        events = np.bincount(index, event[: index.size], minlength=cfg.slots)
        # the special and missing slots keep their places (index maps k.. onto themselves)
        counts[cfg.bins:] = (nonevent + event)[cfg.bins:]
        events[cfg.bins:] = event[cfg.bins:]
        counts[int(group[-1]) + 1: cfg.bins] = 0
        events[int(group[-1]) + 1: cfg.bins] = 0
        return kept, counts.astype(np.int64), events.astype(np.int64)

    def _bin_own(self) -> None:
        cfg = self.config
        held = np.ones(self.n_rows, dtype=bool)
        self.own, counts, events = [], [], []
        for j, name in enumerate(self.columns):
            column = bin_column(name, self._features[:, j], held, cfg.bins, cfg.min_bin_rows,
                                cfg.special_codes)
            codes = column.codes(self._features[:, j])
            n = np.bincount(codes, minlength=cfg.slots)
            e = np.bincount(codes, self.labels, minlength=cfg.slots).astype(np.int64)
            kept, n, e = self._final(n - e, e, column.value_bins)
            column.merge(kept)
            column.woe = woe_iv(n - e, e)[0]
            self.own.append(column)
            counts.append(n)
            events.append(e)
        self._own_counts = np.array(counts, np.int64).reshape(-1, cfg.slots)
        self._own_events = np.array(events, np.int64).reshape(-1, cfg.slots)

    def merge(self, answers: Mapping[str, bytes]) -> dict[str, bytes]:
        """Decrypt F's event counts; merges, WOE and [own WOE columns] back to each F."""
        if tuple(sorted(answers)) != self.feature_parties:
            raise ProtocolError(f"pre-bins expected from {self.feature_parties}, "
                                f"got {sorted(answers)}")
        cfg = self.config
        self._bin_own()
        vectors = self._own_vectors()
        out = {}
        for party in self.feature_parties:
            head, frames = unpack(answers[party], PrebinsHead, f"{party}'s pre-bins")
            width = len(head.columns)
            if len(frames) != 2 or len(head.value_bins) != width or any(
                    not 1 <= k <= cfg.bins for k in head.value_bins):
                raise ProtocolError(f"{party}'s pre-bins do not fit the job's slot layout")
            counts = decode_counts(frames[0], (width, cfg.slots))
            residues = self.he.decrypt_histograms(frames[1], width, cfg.slots)
            events = residues.astype(np.int64)
            if np.any(counts.sum(axis=1) != self.n_rows) or np.any(events > counts) or np.any(
                    residues >= np.uint64(self.n_rows + 1)):
                raise ProtocolError(f"{party}'s counts do not add up to the job's rows")
            finals = [self._final(counts[j] - events[j], events[j], head.value_bins[j])
                      for j in range(width)]
            n = np.array([f[1] for f in finals])
            e = np.array([f[2] for f in finals])
            woe = np.array([woe_iv(n[j] - e[j], e[j])[0] for j in range(width)])
            self.parties[party] = _Party(list(head.columns), n, e, woe)
            reply = BinsHead(kept=[f[0].tolist() for f in finals],
                             woe=woe.tolist() if cfg.share_woe else None, vectors=len(vectors))
            out[party] = pack(reply, *vectors)
        return out

    def _own_vectors(self) -> list[bytes]:
        """[own WOE column, quantised] per own column, when correlations are asked for."""
        if not self.config.correlations or not self.own:
            self._quantised = None
            return []
        t = int(self.he.plain_modulus)
        quantised = np.stack([np.rint(c.transform(self._features[:, j]) * 2**WOE_BITS)
                              for j, c in enumerate(self.own)], axis=1).astype(np.int64)
        self._quantised = quantised
        return [self.he.encrypt_chunks(np.mod(quantised[:, j], t).astype(np.uint64),
                                       self.config.slots) for j in range(quantised.shape[1])]

    def select(self, answers: Mapping[str, bytes],
               crosses: Mapping[str, bytes] | None = None) -> dict[str, Any]:
        """Cross-party correlations, IV selection, then VIF; the IV table (the job's report)."""
        cfg = self.config
        correlated: dict[tuple[str, str], float] = {}
        own_keys = [f"{self.party}:{c.name}" for c in self.own]
        if cfg.correlations and self.own:
            woe = np.stack([c.transform(self._features[:, j]) for j, c in enumerate(self.own)],
                           axis=1)
            if woe.shape[1] > 1:
                with np.errstate(invalid="ignore", divide="ignore"):
                    r = np.nan_to_num(np.corrcoef(woe, rowvar=False))
                for a, b in zip(*np.triu_indices_from(r, 1), strict=True):
                    correlated[(own_keys[a], own_keys[b])] = float(r[a, b])
        for party in self.feature_parties:
            head, frames = unpack(answers.get(party, b""), CorrelationHead,
                                  f"{party}'s correlations") if party in answers else (
                CorrelationHead(pairs=[]), [])
            found = self.parties[party]
            keys = [f"{party}:{c}" for c in found.columns]
            for first, second in head.pairs:
                if not (0 <= first < second < len(keys)):
                    raise ProtocolError(f"{party} flagged a pair of columns it does not have")
                correlated[(keys[first], keys[second])] = math.inf  # r itself is not sent
            correlated.update(self._matrix(party, head.matrix, keys))
            if self._quantised is not None and cfg.correlations:
                if len(frames) != self._quantised.shape[1]:
                    raise ProtocolError(f"{party} answered {len(frames)} inner products, "
                                        f"{self._quantised.shape[1]} were asked")
                for i, frame in enumerate(frames):
                    own = self._quantised[:, i].astype(np.float64)
                    for f, r in enumerate(self._cross(frame, found, own.mean(), own.var())):
                        correlated[(own_keys[i], keys[f])] = r
        correlated.update(self._between_features(crosses or {}))
        self.table, self.correlations = self._characteristics(), correlated
        select(self.table, correlated, cfg.min_iv, cfg.max_correlation)
        report: dict[str, Any] = {"epoch": 0, "loss": None, "auc": None}
        if cfg.max_vif is not None:
            try:
                report["vif_regularised"] = vif_filter(self.table, correlated, cfg.max_vif)
            except ValueError as err:
                raise ProtocolError(f"VIF: {err}") from err
        return {**report, "characteristics": len(self.table),
                "selected": sum(c.selected for c in self.table),
                "iv_table": [c.summary() for c in self.table]}

    def _matrix(self, party: str, matrix: list[list[float]] | None, keys: list[str],
                ) -> dict[tuple[str, str], float]:
        """F's within-F correlations, sent only for VIF (refused when not asked for)."""
        if matrix is None:
            if self.config.max_vif is not None:
                raise ProtocolError(f"{party} sent no correlation matrix; the job asks for VIF")
            return {}
        r = np.asarray(matrix, dtype=np.float64)
        if self.config.max_vif is None or r.shape != (len(keys), len(keys)) or not np.all(
                np.isfinite(r)) or np.any(np.abs(r) > 1 + 1e-9):
            raise ProtocolError(f"{party}'s correlation matrix is not one of its columns' "
                                "correlations, or was not asked for")
        return {(keys[a], keys[b]): float(r[a, b])
                for a, b in zip(*np.triu_indices_from(r, 1), strict=True)}

    def _between_features(self, crosses: Mapping[str, bytes]) -> dict[tuple[str, str], float]:
        """(F1 column, F2 column) correlations: F2's masked sums of F1's encrypted WOE columns,
        from every node sorting after F1; decoded as the bank's own (`_cross`)."""
        parties = self.feature_parties
        expected = set(parties[1:]) if self.config.correlations and len(parties) > 1 else set()
        if set(crosses) != expected:
            raise ProtocolError(f"cross-node sums expected from {sorted(expected)}, "
                                f"got {sorted(crosses)}")
        out: dict[tuple[str, str], float] = {}
        n = float(self.n_rows)
        for receiver in parties:
            if receiver not in crosses:
                continue
            head, frames = unpack(crosses[receiver], CrossHead, f"{receiver}'s cross sums")
            senders = [p for p in parties if p < receiver]
            if head.senders != senders or len(frames) != sum(
                    len(self.parties[p].columns) for p in senders):
                raise ProtocolError(f"{receiver} summed columns of {head.senders} "
                                    f"({len(frames)} frames); {senders} were sent")
            found, frame = self.parties[receiver], iter(frames)
            for sender in senders:
                theirs = self.parties[sender]
                for i, name in enumerate(theirs.columns):
                    _, mean_a, var_a = theirs.moments(i, n)
                    for f, r in enumerate(self._cross(next(frame), found, mean_a, var_a)):
                        out[(f"{sender}:{name}", f"{receiver}:{found.columns[f]}")] = r
        return out

    def _cross(self, frame: bytes, found: _Party, mean_a: float, var_a: float) -> list[float]:
        """Pearson r of a quantised WOE column A (mean, variance over rows) with each of F's,
        from the masked per-bin sums: sum_b w_b (S_b + m_b) = sum_i A_i W_i mod t, the masks
        cancelling (`crypto.masks`)."""
        t = int(self.he.plain_modulus)
        width, n = len(found.columns), float(self.n_rows)
        sums = self.he.decrypt_histograms(frame, width, self.config.slots)
        out = []
        for f in range(width):
            w, mean_w, var_w = found.moments(f, n)
            inner = sum(int(x) * int(v) for x, v in zip(w.tolist(), sums[f].tolist(),
                                                        strict=True)) % t
            inner = inner - t if inner >= t // 2 else inner
            cov = inner / n - mean_a * mean_w
            out.append(pearson(cov, var_a, var_w))
        return out

    def _characteristics(self) -> list[Characteristic]:
        out = []
        for j, column in enumerate(self.own):
            out.append(Characteristic.of(self.party, column.name, self._own_counts[j],
                                         self._own_events[j], column.value_bins, own=column))
        for party in self.feature_parties:
            found = self.parties[party]
            for j, name in enumerate(found.columns):
                value_bins = int(np.max(np.flatnonzero(found.counts[j, : self.config.bins]),
                                        initial=0)) + 1
                out.append(Characteristic.of(party, name, found.counts[j], found.events[j],
                                             value_bins))
        return out

    def summary_bytes(self) -> bytes:
        """The bank's stored summary: the IV table with per-bin counts, WOE and IV for every
        characteristic, and its own columns' bins (to WOE-encode them later)."""
        return json.dumps({"schema": MODEL_SCHEMA, "kind": "woe-iv-summary", "job": self.job,
                           "party": self.party, "role": "label",
                           "characteristics": [c.to_json() for c in self.table],
                           "columns": [c.to_json() for c in self.own]}).encode()


__all__ = ["LabelParty", "slot_counts", "slot_labels"]

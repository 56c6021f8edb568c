"""Feature party F of federated binning: bins its own columns, sums encrypted labels per bin.

F never decrypts: it loads the bank's public BFV context, sums the bank's encrypted label vector
per slot of each of its columns (`crypto.he` floods and re-randomises every answer), and sends
row counts per slot that it checked against its floor. Its edges stay here; the bank refers to
its bins by index. After the bank's merge decisions F keeps its bins (and, when shared, their WOE)
as its model and can WOE-encode its own columns (`ColumnBins.transform`).

Correlations: F sums the bank's encrypted WOE columns per its bins with a mask orthogonal to its
own quantised WOE (`_masked_sums`), so the bank decodes one inner product per column pair. With
several feature nodes the same code serves each pair of nodes: the node whose name sorts first
encrypts its quantised WOE columns under the bank's public key (`peer_columns`, to every node
sorting after it) and the later node answers them exactly as it answers the bank's (`cross`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from common.errors import ProtocolError
from crypto.he import BFV_SUITE, FeatureHe, SbtSuite, pack_frames, unpack_frames
from crypto.masks import orthogonal_mask
from models.binning import WOE_BITS, BinningConfig
from models.binning.bins import ColumnBins, bin_column, slot_counts
from models.binning.wire import (
    BinsHead,
    CorrelationHead,
    CrossHead,
    PrebinsHead,
    encode_counts,
    pack,
    unpack,
)
from models.vlr import FeatureAlignment, StepCache

MODEL_SCHEMA = 1


class BinsBelowFloor(ProtocolError):
    """An answer would reveal a bin with fewer rows than this node's floor: refused."""


class FeatureParty:
    """One feature holder's side of a binning job. Steps: prebins -> finish."""

    def __init__(self, name: str, job: str, table: np.ndarray, alignment: FeatureAlignment,
                 config: BinningConfig, *, columns: tuple[str, ...] = (),
                 suite: SbtSuite = BFV_SUITE) -> None:
        table = np.asarray(table, dtype=np.float64)
        if table.ndim != 2 or table.shape[1] == 0:
            raise ValueError("table must be (rows, columns) with at least one column")
        alignment.validate(table.shape[0])
        self.name, self.job, self.config = name, job, config
        self.columns = columns or tuple(f"x{j}" for j in range(table.shape[1]))
        if len(self.columns) != table.shape[1]:
            raise ValueError(f"{len(self.columns)} names for {table.shape[1]} columns")
        self._table, self._alignment, self._suite = table, alignment, suite
        self._he: FeatureHe | None = None
        self.bins: list[ColumnBins] = []
        self._codes: np.ndarray | None = None
        self.audit: list[tuple[str, dict[str, Any]]] = []
        self._steps = StepCache(capacity=4)

    @property
    def n_rows(self) -> int:
        return self._alignment.n_rows

    def aligned(self) -> tuple[np.ndarray, np.ndarray]:
        """Own columns at training positions (NaN where not held) and the held mask."""
        values = np.full((self.n_rows, self._table.shape[1]), np.nan)
        held = np.zeros(self.n_rows, dtype=bool)
        positions = np.asarray(self._alignment.positions)
        values[positions] = self._table[np.asarray(self._alignment.own_rows)]
        held[positions] = True
        return values, held

    def _code_matrix(self, values: np.ndarray, held: np.ndarray) -> np.ndarray:
        codes = np.empty(values.shape, dtype=np.uint8)
        for j, column in enumerate(self.bins):
            codes[:, j] = column.codes(values[:, j], held)
        return codes

    def check_floor(self, codes: np.ndarray, held: np.ndarray) -> np.ndarray:
        """Row counts per slot; refuses when a non-empty slot the bank learns has fewer rows
        than the floor (the missing slot counts only held rows: the others the bank knows)."""
        slots, floor = self.config.slots, self.config.min_bin_rows
        counts = slot_counts(codes.astype(np.int64), slots)
        held_counts = slot_counts(codes[held].astype(np.int64), slots)
        small = (held_counts > 0) & (held_counts < floor)
        if small.any():
            j, b = (int(v) for v in np.argwhere(small)[0])
            self.audit.append(("binning.refused", {"column": j, "slot": b,
                                                   "rows": int(held_counts[j, b])}))
            raise BinsBelowFloor(f"{self.name} refuses: slot {b} of column {j} would hold "
                                 f"{int(held_counts[j, b])} rows, below its minimum of {floor}")
        return counts

    def prebins(self, public_context: bytes, labels: bytes) -> bytes:
        """Bin own columns (floor merges audited); row counts and [events] per slot."""
        cached = self._steps.lookup("prebins", labels)
        if cached is not None:
            return cached
        self._he = self._suite.load_public(public_context)
        values, held = self.aligned()
        cfg = self.config
        self.bins = [bin_column(name, values[:, j], held, cfg.bins, cfg.min_bin_rows,
                                cfg.special_codes) for j, name in enumerate(self.columns)]
        merged = {c.name: c.merges for c in self.bins if any(c.merges.values())}
        if merged:
            self.audit.append(("binning.merged_below_floor",
                               {"floor": cfg.min_bin_rows, "columns": len(merged),
                                "merges": sum(sum(m.values()) for m in merged.values())}))
        codes = self._code_matrix(values, held)
        counts = self.check_floor(codes, held)
        events = self._he.histograms(labels, codes, cfg.slots)
        head = PrebinsHead(columns=list(self.columns),
                           value_bins=[c.value_bins for c in self.bins])
        return self._steps.store("prebins", labels, pack(head, encode_counts(counts), events))

    def finish(self, request: bytes) -> tuple[bytes, bytes]:
        """Apply the bank's merges, keep the bins (and WOE); answer the correlation step."""
        cached = self._steps.lookup("finish", request)
        if cached is not None:
            head_cached, frames = unpack(cached, CorrelationHead, "cached answer")
            return pack(head_cached, *frames[:-1]), frames[-1]
        if self._he is None or not self.bins:
            raise ProtocolError(f"feature party {self.name} has not binned yet")
        head, vectors = unpack(request, BinsHead, "bins")
        if len(head.kept) != len(self.bins) or len(vectors) != head.vectors or (
                head.woe is not None and len(head.woe) != len(self.bins)):
            raise ProtocolError("merge decisions do not match this party's columns")
        for j, (column, kept) in enumerate(zip(self.bins, head.kept, strict=True)):
            try:
                column.merge(np.asarray(kept, dtype=bool))
            except ValueError as err:
                raise ProtocolError(f"column {j}: {err}") from err
            if head.woe is not None:
                woe = np.asarray(head.woe[j], dtype=np.float64)
                if woe.size != self.config.slots or not np.all(np.isfinite(woe)):
                    raise ProtocolError(f"column {j}: WOE needs {self.config.slots} numbers")
                column.woe = woe
        values, held = self.aligned()
        codes = self._code_matrix(values, held)
        self.check_floor(codes, held)  # merges only grow bins; checked all the same
        self._codes = codes
        answer, blobs = self._correlations(codes, vectors)
        model = self.model_bytes()
        self._steps.store("finish", request, pack(answer, *blobs, model))
        return pack(answer, *blobs), model

    def _woe_columns(self, codes: np.ndarray, *, quantised: bool = False) -> np.ndarray:
        """(rows, columns): each row's WOE of its bin (`codes`) in every own column, on the
        inner products' integer grid when `quantised`. Every column must have its WOE."""
        per_slot = (self._quantised() if quantised
                    else [c.woe for c in self.bins if c.woe is not None])
        if len(per_slot) != len(self.bins):
            raise ProtocolError(f"feature party {self.name} holds no WOE for some columns")
        columns: np.ndarray = np.stack(per_slot, axis=1)[codes, np.arange(len(self.bins))]
        return columns

    def _correlations(self, codes: np.ndarray, vectors: list[bytes],
                      ) -> tuple[CorrelationHead, list[bytes]]:
        cfg = self.config
        if not cfg.correlations or any(c.woe is None for c in self.bins):
            return CorrelationHead(pairs=[]), []
        woe = self._woe_columns(codes)
        r = np.eye(woe.shape[1])
        if woe.shape[1] > 1:
            with np.errstate(invalid="ignore", divide="ignore"):
                r = np.nan_to_num(np.corrcoef(woe, rowvar=False))
            np.fill_diagonal(r, 1.0)
        limit = cfg.max_correlation
        pairs = [] if limit is None else [
            (int(a), int(b)) for a, b in zip(*np.triu_indices_from(r, 1), strict=True)
            if abs(r[a, b]) > limit]
        # VIF needs every pair: sent only when the job asks for it (a node may refuse such jobs,
        # `[floors] share_correlations`)
        head = CorrelationHead(pairs=pairs, matrix=r.tolist() if cfg.max_vif is not None else None)
        return head, self._masked_sums(vectors, codes)

    def _quantised(self) -> list[np.ndarray]:
        """Each column's WOE per slot on the integer grid of the inner products."""
        return [np.rint(c.woe * 2**WOE_BITS).astype(np.int64) for c in self.bins
                if c.woe is not None]

    def _masked_sums(self, vectors: Sequence[bytes], codes: np.ndarray) -> list[bytes]:
        """Per encrypted column, its per-slot sums over each own column's bins plus a mask m with
        sum_b w_b m_b = 0 mod t (w: that column's quantised WOE): only the inner product of the
        two WOE columns can be decoded (`crypto.masks.orthogonal_mask`)."""
        if not vectors:
            return []
        he = self._he
        assert he is not None
        bits = int(he.plain_modulus).bit_length() - 1
        quantised = self._quantised()
        masks = np.stack([np.stack([orthogonal_mask(w, bits) for w in quantised])
                          for _ in vectors])
        return he.histograms_many(vectors, codes, self.config.slots, masks)

    def peer_columns(self, later: Sequence[str]) -> dict[str, bytes]:
        """[own quantised WOE columns] under the bank's public key, for each feature node in
        `later` (the same ciphertexts to each: none of them can decrypt)."""
        if not later or not self.config.correlations or self._codes is None or any(
                c.woe is None for c in self.bins):
            return {}
        request = "|".join(later).encode()
        cached = self._steps.lookup("columns", request)
        if cached is None:
            he = self._he
            assert he is not None
            t = int(he.plain_modulus)
            columns = self._woe_columns(self._codes, quantised=True)
            cached = self._steps.store("columns", request, pack_frames([
                he.encrypt_chunks(np.mod(columns[:, j], t).astype(np.uint64), self.config.slots)
                for j in range(columns.shape[1])]))
        return dict.fromkeys(later, cached)

    def cross(self, columns: Mapping[str, bytes]) -> bytes:
        """Masked per-bin sums of earlier feature nodes' encrypted WOE columns (`peer_columns`)
        over own bins: the bank decodes one inner product per (their column, own column)."""
        if self._codes is None:
            raise ProtocolError(f"feature party {self.name} has not finished its bins yet")
        senders = sorted(columns)  # the bank's order of feature nodes
        request = pack_frames([part for s in senders for part in (s.encode(), columns[s])])
        cached = self._steps.lookup("cross", request)
        if cached is not None:
            return cached
        vectors = [v for s in senders for v in unpack_frames(columns[s])]
        answer = pack(CrossHead(senders=senders), *self._masked_sums(vectors, self._codes))
        return self._steps.store("cross", request, answer)

    def drain_audit(self) -> list[tuple[str, dict[str, Any]]]:
        """Events for the node's audit log (the node's step handler asks after every step)."""
        events, self.audit = self.audit, []
        return events

    def model_bytes(self) -> bytes:
        """This party's bins (edges, slot map, WOE): its own model file, never for the wire."""
        return json.dumps({"schema": MODEL_SCHEMA, "kind": "woe-bins", "job": self.job,
                           "party": self.name, "role": "feature",
                           "columns": [c.to_json() for c in self.bins]}).encode()

    def transform(self, table: np.ndarray) -> np.ndarray:
        """WOE-encode rows of this party's own table (columns in its order)."""
        table = np.asarray(table, dtype=np.float64)
        return np.stack([c.transform(table[:, j]) for j, c in enumerate(self.bins)], axis=1)


def load_bins(data: bytes) -> list[ColumnBins]:
    """A party's stored bins (a feature node's model file or the bank's summary)."""
    found = json.loads(data)
    if found.get("schema") != MODEL_SCHEMA:
        raise ValueError(f"bins file schema {found.get('schema')!r}, expected {MODEL_SCHEMA}")
    return [ColumnBins.from_json(c) for c in found["columns"]]

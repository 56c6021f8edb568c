"""BFV for SecureBoost: gradient histograms by coefficient packing, and scoring slot products.

Chosen by measurement on this 2-core machine (CPU seconds on one core). One histogram "pass" is
100,000 rows x 300 feature columns x 33 bin slots (32 bins + missing). Since F may not learn which
rows sit in a node, every requested node costs a pass over all rows (L zeroes the other rows'
gradients): a full depth-3 tree takes four (root, the left child of the root's split, the left
child of each level-1 split; L gets each right child by subtraction).

* Paillier, n = 3072 bits (128-bit; 2048 bits is only ~112-bit per NIST SP 800-57): 8.9 us per
  ciphertext addition, 3e7 additions per pass = 270 s. OU at 3072 bits: 3.0 us = 90 s, before
  Python's per-call overhead. Neither fits 120 s per tree.
* CKKS slots (TenSEAL): one 0/1 bin mask x ciphertext product per (feature, bin, 4096 rows)
  = 240,000 products at 0.16 ms + 0.44 ms encoding, plus rotations to sum the slots: > 150 s.
* BFV coefficient packing (this module). L puts the packed value G + 2^k H of n' = N/slots rows
  into coefficients 0..n'-1 of one ciphertext; F multiplies it by the 0/1 polynomial
  P = sum_i x^(bin_i * n' + n' - 1 - i): coefficient b*n' + n'-1 of the product is exactly the sum
  over the chunk's rows in bin b, the others hold partial sums. N/slots ~ 250 row-features per
  product is the most a ring product can carry. Through SEAL calls (Plaintext from hex,
  transform_to_ntt, multiply_plain, add): 322 us per product = 38 s per pass. Batched in numpy
  instead (exact negacyclic products by a folded complex FFT over 20-bit limbs, the sum over
  chunks as one matrix product per frequency): ~14 s per pass, plus 5.4 ms to read each received
  ciphertext out of SEAL (2.2 s per pass) -> measured 43 s per encrypted depth-3 tree when F
  summed only a node's rows (two passes). Chosen.

Security: N = 8192 and q = two 60-bit primes (+ a 60-bit special prime) = 180 <= 218 bits, the
HomomorphicEncryption.org 128-bit bound SEAL enforces (sec_level tc128). Key generation,
encryption, decryption and re-randomisation are SEAL's; numpy does only the public
plaintext-times-ciphertext arithmetic (tested bit-identical to SEAL's multiply_plain). L knows its
own encryption noise, so every ciphertext F returns is (1) uniformly masked mod q in every
coefficient that is not a bin sum, (2) noise-flooded on the bin sums with a uniform integer
2^40 x the bound of the noise L could know (statistical distance <= 2^-40), and (3) re-randomised
with a fresh public-key encryption of zero (else L could divide c1*P by its own c1 and read P).
Masks and floods use `secrets`. The flood fits up to ~1M rows per node. Joint scoring uses BFV
SIMD batching (t a 40-bit prime, q 160 bits) with the same flooding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tenseal.sealapi as sa

from common.errors import ProtocolError
from crypto.he import seal_bytes
from crypto.he.bfv_packing import packed_products
from crypto.he.bfv_ring import (
    HIST_COEFF_BITS,
    HIST_PLAIN_BITS,
    RING_DEGREE,
    SCORE_COEFF_BITS,
    SCORE_PLAIN_BITS,
    BfvRing,
    chunk_width,
    histogram_targets,
    product_noise_bound,
)
from crypto.he.frames import pack_frames, pack_vector, unpack_frames, unpack_vector
from crypto.he.interface import SbtSuite

_CONTEXT_TAG = b"fedcredit/sbt-bfv/v1"
_PRIVATE_TAG = b"fedcredit/sbt-bfv-private/v1"
BFV_TAG = b"SBTC"
_PASS_BYTES = 600 << 20  # transform accumulator of one shared pass (vectors x features)


class BfvPublic:
    """Public side of L's two BFV key pairs (histograms and scoring)."""

    name = "bfv"

    def __init__(self, hist_key: bytes | None = None, score_key: bytes | None = None) -> None:
        self._hist = BfvRing(HIST_COEFF_BITS, sa.Modulus(1 << HIST_PLAIN_BITS))
        self._score = BfvRing(
            SCORE_COEFF_BITS, sa.PlainModulus.Batching(RING_DEGREE, SCORE_PLAIN_BITS)
        )
        self._hist_pk = self._score_pk = None
        if hist_key is not None and score_key is not None:
            self._attach(
                self._hist.public_key(hist_key), self._score.public_key(score_key)
            )
        self._encoder = sa.BatchEncoder(self._score.ctx)

    def _attach(self, hist_pk: Any, score_pk: Any) -> None:
        self._hist_pk, self._score_pk = hist_pk, score_pk
        self._hist_enc = sa.Encryptor(self._hist.ctx, hist_pk)
        self._score_enc = sa.Encryptor(self._score.ctx, score_pk)

    @classmethod
    def from_public_bytes(cls, data: bytes) -> BfvPublic:
        """The production loader: L's public keys for the pinned 128-bit parameter sets only."""
        frames = unpack_frames(data, max_frames=3)
        if frames and frames[0] == _PRIVATE_TAG:
            raise ProtocolError(
                "BFV context refused: it carries a secret key where only a public context is "
                "expected"
            )
        if len(frames) != 3 or frames[0] != _CONTEXT_TAG:
            raise ProtocolError("not a fedcredit SecureBoost BFV context")
        return cls(frames[1], frames[2])

    @property
    def plain_modulus(self) -> int:
        return self._hist.t

    @property
    def score_modulus(self) -> int:
        return self._score.t

    @property
    def slot_count(self) -> int:
        return int(self._encoder.slot_count())

    def histograms(self, chunks: bytes, bins: np.ndarray, slots: int) -> bytes:
        """Per feature one ciphertext whose target coefficients hold the bin sums (masked)."""
        return self.histograms_many([chunks], bins, slots)[0]

    def histograms_many(
        self, vectors: Sequence[bytes], bins: np.ndarray, slots: int,
        masks: np.ndarray | None = None,
    ) -> list[bytes]:
        """`histograms` of several encrypted vectors over the same rows: the bin polynomials'
        transforms are shared, so each extra vector costs a fraction of a pass. `masks`
        (vectors, features, slots) residues mod t, if given, are added to the bin sums."""
        if masks is not None and masks.shape != (len(vectors), bins.shape[1], slots):
            raise ValueError(f"masks of shape {masks.shape} for {len(vectors)} vectors x "
                             f"{bins.shape[1]} features x {slots} slots")
        width = chunk_width(slots)
        h = self._hist
        raws = []
        for chunks in vectors:
            n, frames = unpack_vector(chunks, BFV_TAG, width)
            if n != bins.shape[0]:
                raise ProtocolError(f"{n} encrypted rows for {bins.shape[0]} binned rows")
            raws.append(np.stack([h.raw(h.ciphertext(f)) for f in frames]))
        targets = histogram_targets(slots)
        bound = product_noise_bound(bins.shape[0], 1.0)  # one 0/1 term per row in each target
        group = max(1, _PASS_BYTES // max(1, bins.shape[1] * RING_DEGREE * 12 * 16))
        out: list[bytes] = []
        for start in range(0, len(raws), group):
            batch = raws[start : start + group]
            sums = packed_products(np.concatenate(batch, axis=1), bins, slots, h.primes)
            per_vector = sums.reshape(sums.shape[0], len(batch), 2, *sums.shape[2:])
            for v in range(len(batch)):
                blobs: list[bytes] = []
                for feature in per_vector[:, v]:
                    feature = np.ascontiguousarray(feature)
                    h.flood(feature, targets, bound)
                    ct = h.from_raw(feature)
                    if masks is not None:
                        h.evaluator.add_plain_inplace(
                            ct, _plain_at(targets, masks[start + v][len(blobs)]))
                    zero = sa.Ciphertext(h.ctx)
                    self._hist_enc.encrypt_zero(zero)
                    h.evaluator.add_inplace(ct, zero)
                    blobs.append(seal_bytes.save(ct))
                out.append(pack_vector(BFV_TAG, len(blobs), 1, blobs))
        return out

    def encrypt_chunks(self, values: np.ndarray, slots: int) -> bytes:
        """`BfvPrivate.encrypt_chunks` with L's public key: a feature node's own values that
        another feature node sums per its bins (binning's cross-node correlations)."""

        def encrypt(plain: sa.Plaintext) -> Any:
            ct = sa.Ciphertext(self._hist.ctx)
            self._hist_enc.encrypt(plain, ct)
            return ct

        return self._chunks(values, slots, encrypt)

    def _chunks(self, values: np.ndarray, slots: int, encrypt: Any) -> bytes:
        width = chunk_width(slots)
        flat = np.asarray(values, dtype=np.uint64).reshape(-1)
        if flat.size == 0 or int(flat.max()) >= self._hist.t:
            raise ValueError("need a non-empty vector of residues below t")
        frames = []
        for start in range(0, flat.size, width):
            part = flat[start : start + width]
            nz = np.flatnonzero(part)[::-1]
            terms = [f"{int(part[i]):X}x^{int(i)}" if i else f"{int(part[i]):X}" for i in nz]
            plain = sa.Plaintext(" + ".join(terms) if terms else "0")
            frames.append(seal_bytes.save(encrypt(plain)))
        return pack_vector(BFV_TAG, flat.size, width, frames)

    def multiply_slots(self, data: bytes, factors: np.ndarray) -> bytes:
        """[v * factors] slot-wise, flooded and re-randomised (scoring)."""
        s = self._score
        per = self.slot_count
        n, frames = unpack_vector(data, BFV_TAG, per)
        flat = np.asarray(factors, dtype=np.uint64).reshape(-1)
        if flat.size != n or (flat.size and int(flat.max()) >= s.t):
            raise ProtocolError(f"{flat.size} factors for {n} encrypted slots, or out of range")
        bound = product_noise_bound(RING_DEGREE, s.t / 2)  # centred plain coefficients
        out = []
        for i, frame in enumerate(frames):
            ct = s.ciphertext(frame)
            chunk = np.zeros(per, dtype=np.uint64)
            part = flat[i * per : (i + 1) * per]
            chunk[: part.size] = part
            if chunk.any():
                plain = sa.Plaintext()
                self._encoder.encode(chunk.tolist(), plain)
                s.evaluator.multiply_plain_inplace(ct, plain)
            else:  # v * 0: SEAL refuses to make that (transparent) ciphertext; encrypt 0 instead
                ct = sa.Ciphertext(s.ctx)
                self._score_enc.encrypt_zero(ct)
            raw = s.raw(ct)
            s.flood(raw, np.arange(RING_DEGREE), bound)
            ct = s.from_raw(raw)
            zero = sa.Ciphertext(s.ctx)
            self._score_enc.encrypt_zero(zero)
            s.evaluator.add_inplace(ct, zero)
            out.append(seal_bytes.save(ct))
        return pack_vector(BFV_TAG, n, per, out)

    def add_slots(self, parts: Sequence[bytes]) -> bytes:
        """Sum of several parties' slot vectors (the relay's step; needs no key)."""
        if not parts:
            raise ValueError("nothing to add")
        s, per = self._score, self.slot_count
        n, acc_frames = unpack_vector(parts[0], BFV_TAG, per)
        acc = [s.ciphertext(f) for f in acc_frames]
        for part in parts[1:]:
            m, frames = unpack_vector(part, BFV_TAG, per)
            if m != n:
                raise ProtocolError(f"cannot add slot vectors of {n} and {m} values")
            for a, f in zip(acc, frames, strict=True):
                s.evaluator.add_inplace(a, s.ciphertext(f))
        return pack_vector(BFV_TAG, n, per, [seal_bytes.save(a) for a in acc])


class BfvPrivate(BfvPublic):
    """L's two key pairs; the secret keys never leave this object."""

    def __init__(self, secret_keys: tuple[bytes, bytes] | None = None) -> None:
        super().__init__()
        if secret_keys is None:
            hist_keys = sa.KeyGenerator(self._hist.ctx)
            score_keys = sa.KeyGenerator(self._score.ctx)
        else:  # reloaded from private_bytes(): the same secret keys, fresh public keys
            hist_keys = sa.KeyGenerator(self._hist.ctx, seal_bytes.load(
                sa.SecretKey(), self._hist.ctx, secret_keys[0]))
            score_keys = sa.KeyGenerator(self._score.ctx, seal_bytes.load(
                sa.SecretKey(), self._score.ctx, secret_keys[1]))
        self._secrets = (hist_keys.secret_key(), score_keys.secret_key())
        hist_pk, score_pk = sa.PublicKey(), sa.PublicKey()
        hist_keys.create_public_key(hist_pk)
        score_keys.create_public_key(score_pk)
        self._attach(hist_pk, score_pk)
        self._hist_sym = sa.Encryptor(self._hist.ctx, hist_keys.secret_key())
        self._score_sym = sa.Encryptor(self._score.ctx, score_keys.secret_key())
        self._hist_dec = sa.Decryptor(self._hist.ctx, hist_keys.secret_key())
        self._score_dec = sa.Decryptor(self._score.ctx, score_keys.secret_key())

    def public_bytes(self) -> bytes:
        keys = (self._hist_pk, self._score_pk)
        return pack_frames([_CONTEXT_TAG, *(seal_bytes.save(k) for k in keys)])

    def private_bytes(self) -> bytes:
        """Both secret keys, for the owner's own 0600 key file (never for the wire)."""
        return pack_frames([_PRIVATE_TAG, *(seal_bytes.save(k) for k in self._secrets)])

    @classmethod
    def from_private_bytes(cls, data: bytes) -> BfvPrivate:
        frames = unpack_frames(data, max_frames=3)
        if len(frames) != 3 or frames[0] != _PRIVATE_TAG:
            raise ProtocolError("not a fedcredit SecureBoost BFV private key file")
        return cls((frames[1], frames[2]))

    def encrypt_chunks(self, values: np.ndarray, slots: int) -> bytes:
        """Values (< t) of consecutive rows, n' per ciphertext in coefficients 0..n'-1 (with L's
        secret key)."""
        return self._chunks(values, slots, self._hist_sym.encrypt_symmetric)

    def decrypt_histograms(self, data: bytes, features: int, slots: int) -> np.ndarray:
        """(features, slots) residues mod t read from the target coefficients."""
        n, frames = unpack_vector(data, BFV_TAG, 1)
        if n != features:
            raise ProtocolError(f"expected {features} feature histograms, got {n}")
        targets = histogram_targets(slots).tolist()
        out = np.zeros((features, slots), dtype=np.uint64)
        for f, frame in enumerate(frames):
            plain = sa.Plaintext()
            self._hist_dec.decrypt(self._hist.ciphertext(frame), plain)
            count = plain.coeff_count()
            out[f] = [plain.data(i) if i < count else 0 for i in targets]
        return out

    def encrypt_slots(self, values: np.ndarray) -> bytes:
        flat = np.asarray(values, dtype=np.uint64).reshape(-1)
        per = self.slot_count
        if flat.size == 0 or int(flat.max()) >= self._score.t:
            raise ValueError("need a non-empty vector of residues below the scoring modulus")
        frames = []
        for start in range(0, flat.size, per):
            chunk = np.zeros(per, dtype=np.uint64)
            part = flat[start : start + per]
            chunk[: part.size] = part
            plain = sa.Plaintext()
            self._encoder.encode(chunk.tolist(), plain)
            frames.append(seal_bytes.save(self._score_sym.encrypt_symmetric(plain)))
        return pack_vector(BFV_TAG, flat.size, per, frames)

    def decrypt_slots(self, data: bytes) -> np.ndarray:
        per = self.slot_count
        n, frames = unpack_vector(data, BFV_TAG, per)
        values = []
        for frame in frames:
            plain = sa.Plaintext()
            self._score_dec.decrypt(self._score.ciphertext(frame), plain)
            values.append(np.asarray(self._encoder.decode_uint64(plain), dtype=np.uint64))
        return np.concatenate(values)[:n]


def _plain_at(positions: np.ndarray, values: np.ndarray) -> sa.Plaintext:
    """The plaintext polynomial with `values` (residues mod t) at coefficients `positions`."""
    terms = [f"{int(v):X}x^{int(p)}" if p else f"{int(v):X}"
             for p, v in sorted(zip(positions.tolist(), values.tolist(), strict=True),
                                reverse=True) if v]
    return sa.Plaintext(" + ".join(terms) if terms else "0")


BFV_SUITE = SbtSuite("bfv", BfvPrivate, BfvPublic.from_public_bytes)

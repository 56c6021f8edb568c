"""Homomorphic gradient histograms for SecureBoost: BFV coefficient packing via SEAL, plus a twin.

Chosen by measurement on this 2-core machine (CPU seconds on one core). One histogram "pass" is
100,000 rows x 300 feature columns x 33 bin slots (32 bins + missing); a depth-3 tree needs at
most two passes (root, then only the smaller child of each pair; L gets the sibling by subtraction).

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
  ciphertext out of SEAL (2.2 s per pass) -> measured 43 s per encrypted depth-3 tree. Chosen.

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

import math
import os
import secrets
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import tenseal.sealapi as sa

from common.errors import ProtocolError
from crypto.ckks import PRODUCTION_ENV, pack_frames, unpack_frames

RING_DEGREE = 8192
HIST_COEFF_BITS = (60, 60, 60)  # data primes (60, 60) + special prime; 180 <= 218 bits
HIST_PLAIN_BITS = 59  # t = 2^59: packed G + 2^k H sums live in (-t/2, t/2)
SCORE_COEFF_BITS = (55, 55, 50, 55)  # data primes 160 bits + special; 215 <= 218 bits
SCORE_PLAIN_BITS = 40  # a batching prime t = 1 mod 2N
STATISTICAL_BITS = 40
NOISE_SIGMA = 3.2  # SEAL's error distribution
TAIL_SIGMAS = 7.5  # P(|sub-Gaussian sum| > 7.5 sigma) < 2^-40
FRESH_NOISE_BOUND = 1 << 19  # |e u + e1 + e2 s| of a public-key encryption of zero (6 sigma * 2N)


def product_noise_bound(terms: int, plain_bound: float) -> float:
    """|noise| of sum_j p_j (e + eps)_j over `terms` plaintext terms |p_j| <= plain_bound, known
    to L: its own error e (sub-Gaussian, sigma 3.2; bounded with probability 1 - 2^-40) and the
    encoding rounding |eps| <= 1/2 (deterministic, so bounded in the worst case)."""
    return plain_bound * (0.5 * terms + TAIL_SIGMAS * NOISE_SIGMA * math.sqrt(terms))


_LIMB_BITS = 20
_CONTEXT_TAG = b"fedcredit/sbt-bfv/v1"
_PRIVATE_TAG = b"fedcredit/sbt-bfv-private/v1"
_PLAIN_CONTEXT = b"fedcredit/sbt-plain-twin/v1"
_CT_TAG, _PLAIN_TAG = b"SBTC", b"SBTP"
_HEADER = struct.Struct("<4sQI")  # tag, number of values, values per ciphertext
_SEAL_HEADER = struct.Struct("<HBBBBHQ")  # magic, header size, version, compression, size
_CT_MEMBERS = struct.Struct("<4QBQQQdQ")  # parms_id, ntt, size, degree, primes, scale, cf


def chunk_width(slots: int) -> int:
    """Rows per histogram ciphertext when every feature has `slots` bin slots."""
    if not 2 <= slots <= 256:
        raise ValueError(f"{slots} bin slots: need 2..256")
    return RING_DEGREE // slots


def _memfd_save(obj: Any) -> bytes:
    fd = os.memfd_create("fedcredit-sbt", os.MFD_CLOEXEC)
    try:
        obj.save(f"/proc/self/fd/{fd}")
        with open(f"/proc/self/fd/{fd}", "rb") as handle:
            return handle.read()
    finally:
        os.close(fd)


def _memfd_load(obj: Any, ctx: Any, data: bytes) -> Any:
    fd = os.memfd_create("fedcredit-sbt", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        try:
            obj.load(ctx, f"/proc/self/fd/{fd}")
        except (ValueError, RuntimeError, TypeError) as err:
            raise ProtocolError(f"SEAL object refused: {err}") from err
    finally:
        os.close(fd)
    return obj


def _seal_version() -> tuple[int, int]:
    head = _memfd_save(sa.Plaintext("1"))[: _SEAL_HEADER.size]
    _, _, major, minor, _, _, _ = _SEAL_HEADER.unpack(head)
    return major, minor


_SEAL_VERSION = _seal_version()


def _seal_stream(members: bytes) -> bytes:
    size = _SEAL_HEADER.size + len(members)
    return _SEAL_HEADER.pack(0xA15E, 16, *_SEAL_VERSION, 0, 0, size) + members


class _Bfv:
    """One BFV parameter set: SEAL context plus the raw-coefficient bridge to numpy."""

    def __init__(self, coeff_bits: tuple[int, ...], plain: Any) -> None:
        parms = sa.EncryptionParameters(sa.SCHEME_TYPE.BFV)
        parms.set_poly_modulus_degree(RING_DEGREE)
        parms.set_coeff_modulus(sa.CoeffModulus.Create(RING_DEGREE, list(coeff_bits)))
        parms.set_plain_modulus(plain)
        self.ctx = sa.SEALContext(parms, True, sa.SEC_LEVEL_TYPE.TC128)
        if not self.ctx.parameters_set():
            raise ValueError(f"BFV parameters refused: {self.ctx.parameters_error_message()}")
        first = self.ctx.first_context_data()
        self.first = self.ctx.first_parms_id()
        self.primes = np.array([m.value() for m in first.parms().coeff_modulus()], np.uint64)
        self.t = int(parms.plain_modulus().value())
        self.evaluator = sa.Evaluator(self.ctx)

    def ciphertext(self, data: bytes) -> Any:
        """Load and check a received ciphertext: fresh level, two polynomials, coefficient form."""
        ct = _memfd_load(sa.Ciphertext(self.ctx), self.ctx, data)
        if ct.size() != 2 or ct.is_ntt_form() or list(ct.parms_id()) != list(self.first):
            raise ProtocolError("ciphertext is not a fresh two-polynomial BFV ciphertext")
        return ct

    def raw(self, ct: Any) -> np.ndarray:
        """Coefficients (2, primes, N) of a ciphertext; SEAL offers only element reads."""
        arr = ct.dyn_array()
        count = arr.size()
        flat = np.fromiter(map(arr.__getitem__, range(count)), dtype=np.uint64, count=count)
        return flat.reshape(2, self.primes.size, RING_DEGREE)

    def from_raw(self, raw: np.ndarray) -> Any:
        """A SEAL ciphertext holding `raw` (2, primes, N); SEAL re-validates every coefficient."""
        data = np.ascontiguousarray(raw, dtype="<u8")
        dyn = _seal_stream(struct.pack("<Q", data.size) + data.tobytes())
        members = _CT_MEMBERS.pack(*self.first, 0, 2, RING_DEGREE, self.primes.size, 1.0, 1)
        return _memfd_load(sa.Ciphertext(self.ctx), self.ctx, _seal_stream(members + dyn))

    def uniform(self, shape: tuple[int, ...]) -> np.ndarray:
        """Uniform residues mod each prime (last axis = primes), by rejection, from `secrets`."""
        shifts = np.array([64 - int(p).bit_length() for p in self.primes], dtype=np.uint64)
        out = _random_u64(int(np.prod(shape))).reshape(shape) >> shifts
        bad = out >= self.primes
        while bad.any():
            redo = _random_u64(int(bad.sum())) >> np.broadcast_to(shifts, shape)[bad]
            out[bad] = redo
            bad = out >= self.primes
        return out

    def signed(self, values: np.ndarray) -> np.ndarray:
        """Residues (..., primes) of int64 values."""
        v = values[..., None]
        return np.where(v < 0, self.primes.astype(np.int64) + v, v).astype(np.uint64)

    def flood(self, raw: np.ndarray, positions: np.ndarray, bound: float) -> None:
        """c0 += uniform mod q off `positions`; on them += uniform |x| < 2^40 * bound."""
        bits = math.ceil(math.log2(bound + 1.0)) + STATISTICAL_BITS
        limit = math.prod(int(p) for p in self.primes) // (2 * self.t)
        if (1 << bits) + bound + FRESH_NOISE_BOUND >= limit:
            raise ValueError(f"flooding needs {bits} bits; the modulus leaves too few")
        mask = self.uniform((RING_DEGREE, self.primes.size)).T  # (primes, N)
        if bits < 62:
            flood = (_random_u64(positions.size) >> np.uint64(63 - bits)).astype(np.int64)
            mask[:, positions] = self.signed(flood - (np.int64(1) << np.int64(bits))).T
        else:  # wider than int64 (scoring): Python integers, a few thousand per ciphertext
            draws = [secrets.randbits(bits + 1) - (1 << bits) for _ in range(positions.size)]
            for j, prime in enumerate(self.primes.tolist()):
                mask[j, positions] = np.array([d % prime for d in draws], dtype=np.uint64)
        raw[0] = _add_mod(raw[0], mask, self.primes[:, None])


def _random_u64(count: int) -> np.ndarray:
    return np.frombuffer(secrets.token_bytes(8 * count), dtype="<u8").astype(np.uint64)


def random_nonzero(count: int, modulus: int) -> np.ndarray:
    """Uniform residues in [1, modulus) from `secrets` (rejection sampling)."""
    shift = np.uint64(64 - modulus.bit_length())
    out = _random_u64(count) >> shift
    bad = (out == 0) | (out >= modulus)
    while bad.any():
        out[bad] = _random_u64(int(bad.sum())) >> shift
        bad = (out == 0) | (out >= modulus)
    return out


def _add_mod(a: np.ndarray, b: np.ndarray, q: np.ndarray) -> np.ndarray:
    s: np.ndarray = a + b  # both < q < 2^61: no wrap
    return np.where(s >= q, s - q, s)


def _mul_pow2_mod(x: np.ndarray, bits: int, q: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """x * 2^bits mod q for x < q < 2^60, with delta = 2^60 mod q < 2^24."""
    hi = x >> np.uint64(60 - bits)
    lo = (x & np.uint64((1 << (60 - bits)) - 1)) << np.uint64(bits)
    s: np.ndarray = hi * delta + lo
    return np.where(s >= q, s - q, s)


class _NegacyclicFft:
    """Exact products in Z[x]/(x^N + 1) for small-integer operands via an N/2-point complex FFT."""

    def __init__(self, degree: int) -> None:
        self.half = degree // 2
        self.twist = np.exp(1j * np.pi * np.arange(self.half) / degree)

    def forward(self, polys: np.ndarray) -> np.ndarray:
        z = (polys[..., : self.half] + 1j * polys[..., self.half :]) * self.twist
        return np.fft.fft(z, axis=-1)

    def inverse(self, spectra: np.ndarray, axis: int = -1) -> np.ndarray:
        z = np.moveaxis(np.fft.ifft(spectra, axis=axis), axis, -1) * self.twist.conj()
        return np.concatenate([z.real, z.imag], axis=-1)


_FFT = _NegacyclicFft(RING_DEGREE)


def packed_products(
    raw: np.ndarray, bins: np.ndarray, slots: int, primes: np.ndarray
) -> np.ndarray:
    """sum_c ct_c * P_{c,f} for every feature f: raw (C, 2, k, N) -> (F, 2, k, N), mod each prime.

    Chunk c holds rows c*n'..c*n'+n'-1 (n' = N // slots); row i of a chunk with bin b adds the
    monomial x^(b*n' + n'-1-i) to P. Exact: 20-bit limbs keep every FFT sum below 2^38.
    """
    chunks, polys, k, degree = raw.shape
    rows, features = bins.shape
    if rows > chunks * chunk_width(slots) or rows <= (chunks - 1) * chunk_width(slots):
        raise ProtocolError(f"{chunks} chunks do not hold {rows} rows")
    if bins.size and int(bins.max()) >= slots:
        raise ValueError("bin index beyond the slot count")
    ints = _limb_products(raw, bins, slots).reshape(features, polys, k, 3, degree)
    q = primes.astype(np.uint64)[None, None, :, None]
    delta = ((np.uint64(1) << np.uint64(60)) % q).astype(np.uint64)
    limb = [
        np.where(
            ints[:, :, :, s] < 0, ints[:, :, :, s] + q.astype(np.int64), ints[:, :, :, s]
        ).astype(np.uint64)
        for s in range(3)
    ]
    result = limb[2]
    for s in (1, 0):
        result = _add_mod(_mul_pow2_mod(result, _LIMB_BITS, q, delta), limb[s], q)
    return result


def _limb_products(raw: np.ndarray, bins: np.ndarray, slots: int) -> np.ndarray:
    """Integer negacyclic sums (F, L, N) over 20-bit limbs; see `packed_products`."""
    chunks, polys, k, degree = raw.shape
    rows, features = bins.shape
    n_limbs, width, half = polys * k * 3, chunk_width(slots), degree // 2
    acc = np.zeros((half, features, n_limbs), dtype=np.complex128)
    c_block, f_block = 64, 25
    buffer = np.empty(half * c_block * f_block, dtype=np.complex128)
    mask = np.uint64((1 << _LIMB_BITS) - 1)
    for c0 in range(0, chunks, c_block):
        c1 = min(chunks, c0 + c_block)
        block = raw[c0:c1]
        limbs = np.stack([(block >> np.uint64(s)) & mask for s in (0, 20, 40)], axis=3)
        spectra = np.ascontiguousarray(
            _FFT.forward(limbs.reshape(c1 - c0, n_limbs, degree).astype(np.float64)).transpose(
                2, 0, 1
            )
        )  # (N/2, chunks, limbs)
        r0, r1 = c0 * width, min(rows, c1 * width)
        local = np.arange(r1 - r0)
        chunk_of, shift = local // width, width - 1 - local % width
        for f0 in range(0, features, f_block):
            f1 = min(features, f0 + f_block)
            nc, nf = c1 - c0, f1 - f0
            x = buffer[: half * nc * nf]
            x.fill(0)
            exps = bins[r0:r1, f0:f1].astype(np.int64) * width + shift[:, None]
            imag = exps >= half
            j = np.where(imag, exps - half, exps)
            values = _FFT.twist[j] * np.where(imag, 1j, 1.0)
            flat = (j * nc + chunk_of[:, None]) * nf + np.arange(nf)
            x[flat[~imag]] = values[~imag]
            x[flat[imag]] += values[imag]  # a real and an imaginary monomial may share a slot
            y = np.fft.fft(x.reshape(half, nc, nf), axis=0)
            acc[:, f0:f1] += np.matmul(y.transpose(0, 2, 1), spectra)
    out = _FFT.inverse(acc, axis=0)  # (F, L, N)
    ints: np.ndarray = np.rint(out)
    if out.size and float(np.max(np.abs(out - ints))) > 0.2:
        raise ArithmeticError("FFT products lost exactness")
    return ints.astype(np.int64)


def _pack_values(tag: bytes, n: int, per: int, frames: Sequence[bytes]) -> bytes:
    return pack_frames([_HEADER.pack(tag, n, per), *frames])


def _unpack_values(data: bytes, tag: bytes, per: int) -> tuple[int, list[bytes]]:
    frames = unpack_frames(data)
    if not frames or len(frames[0]) != _HEADER.size:
        raise ProtocolError("encrypted vector has no header")
    got, n, got_per = _HEADER.unpack(frames[0])
    if got != tag or got_per != per:
        raise ProtocolError(f"vector {got!r}/{got_per} per ciphertext, expected {tag!r}/{per}")
    if len(frames) - 1 != -(-n // per) or n == 0:
        raise ProtocolError(f"vector of {n} values has {len(frames) - 1} ciphertexts")
    return int(n), frames[1:]


def histogram_targets(slots: int) -> np.ndarray:
    """Coefficients holding the bin sums of one feature's product."""
    width = chunk_width(slots)
    return np.arange(slots) * width + width - 1


class LabelHe(Protocol):
    """L's side: its own key pairs; encrypts packed gradients and selectors, decrypts sums."""

    @property
    def name(self) -> str: ...
    @property
    def plain_modulus(self) -> int: ...
    @property
    def score_modulus(self) -> int: ...
    def public_bytes(self) -> bytes: ...
    def encrypt_chunks(self, values: np.ndarray, slots: int) -> bytes: ...
    def decrypt_histograms(self, data: bytes, features: int, slots: int) -> np.ndarray: ...
    def encrypt_slots(self, values: np.ndarray) -> bytes: ...
    def decrypt_slots(self, data: bytes) -> np.ndarray: ...


class FeatureHe(Protocol):
    """F's (and the relay's) side: public context only; aggregates without decrypting."""

    @property
    def name(self) -> str: ...
    @property
    def plain_modulus(self) -> int: ...
    @property
    def score_modulus(self) -> int: ...
    def histograms(self, chunks: bytes, bins: np.ndarray, slots: int) -> bytes: ...
    def multiply_slots(self, data: bytes, factors: np.ndarray) -> bytes: ...
    def add_slots(self, parts: Sequence[bytes]) -> bytes: ...


@dataclass(frozen=True)
class SbtSuite:
    """How roles get their HE: L makes key pairs, F and the relay load L's public bytes."""

    name: str
    make_private: Callable[[], LabelHe]
    load_public: Callable[[bytes], FeatureHe]


class BfvPublic:
    """Public side of L's two BFV key pairs (histograms and scoring)."""

    name = "bfv"

    def __init__(self, hist_key: bytes | None = None, score_key: bytes | None = None) -> None:
        self._hist = _Bfv(HIST_COEFF_BITS, sa.Modulus(1 << HIST_PLAIN_BITS))
        self._score = _Bfv(
            SCORE_COEFF_BITS, sa.PlainModulus.Batching(RING_DEGREE, SCORE_PLAIN_BITS)
        )
        self._hist_pk = self._score_pk = None
        if hist_key is not None and score_key is not None:
            self._attach(
                _memfd_load(sa.PublicKey(), self._hist.ctx, hist_key),
                _memfd_load(sa.PublicKey(), self._score.ctx, score_key),
            )
        self._encoder = sa.BatchEncoder(self._score.ctx)

    def _attach(self, hist_pk: Any, score_pk: Any) -> None:
        self._hist_pk, self._score_pk = hist_pk, score_pk
        self._hist_enc = sa.Encryptor(self._hist.ctx, hist_pk)
        self._score_enc = sa.Encryptor(self._score.ctx, score_pk)

    @classmethod
    def from_public_bytes(cls, data: bytes) -> BfvPublic:
        frames = unpack_frames(data, max_frames=3)
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
        width = chunk_width(slots)
        n, frames = _unpack_values(chunks, _CT_TAG, width)
        if n != bins.shape[0]:
            raise ProtocolError(f"{n} encrypted rows for {bins.shape[0]} binned rows")
        h = self._hist
        raw = np.stack([h.raw(h.ciphertext(f)) for f in frames])
        sums = packed_products(raw, bins, slots, h.primes)
        targets = histogram_targets(slots)
        bound = product_noise_bound(n, 1.0)  # one 0/1 term per row in each target
        out = []
        for feature in sums:
            h.flood(feature, targets, bound)
            ct = h.from_raw(feature)
            zero = sa.Ciphertext(h.ctx)
            self._hist_enc.encrypt_zero(zero)
            h.evaluator.add_inplace(ct, zero)
            out.append(_memfd_save(ct))
        return _pack_values(_CT_TAG, len(out), 1, out)

    def multiply_slots(self, data: bytes, factors: np.ndarray) -> bytes:
        """[v * factors] slot-wise, flooded and re-randomised (scoring)."""
        s = self._score
        per = self.slot_count
        n, frames = _unpack_values(data, _CT_TAG, per)
        flat = np.asarray(factors, dtype=np.uint64).reshape(-1)
        if flat.size != n or (flat.size and int(flat.max()) >= s.t):
            raise ProtocolError(f"{flat.size} factors for {n} encrypted slots, or out of range")
        bound = product_noise_bound(RING_DEGREE, s.t / 2)  # centred plain coefficients
        out = []
        for i, frame in enumerate(frames):
            ct = s.ciphertext(frame)
            plain = sa.Plaintext()
            chunk = np.zeros(per, dtype=np.uint64)
            part = flat[i * per : (i + 1) * per]
            chunk[: part.size] = part
            self._encoder.encode(chunk.tolist(), plain)
            s.evaluator.multiply_plain_inplace(ct, plain)
            raw = s.raw(ct)
            s.flood(raw, np.arange(RING_DEGREE), bound)
            ct = s.from_raw(raw)
            zero = sa.Ciphertext(s.ctx)
            self._score_enc.encrypt_zero(zero)
            s.evaluator.add_inplace(ct, zero)
            out.append(_memfd_save(ct))
        return _pack_values(_CT_TAG, n, per, out)

    def add_slots(self, parts: Sequence[bytes]) -> bytes:
        """Sum of several parties' slot vectors (the relay's step; needs no key)."""
        if not parts:
            raise ValueError("nothing to add")
        s, per = self._score, self.slot_count
        n, acc_frames = _unpack_values(parts[0], _CT_TAG, per)
        acc = [s.ciphertext(f) for f in acc_frames]
        for part in parts[1:]:
            m, frames = _unpack_values(part, _CT_TAG, per)
            if m != n:
                raise ProtocolError(f"cannot add slot vectors of {n} and {m} values")
            for a, f in zip(acc, frames, strict=True):
                s.evaluator.add_inplace(a, s.ciphertext(f))
        return _pack_values(_CT_TAG, n, per, [_memfd_save(a) for a in acc])


class BfvPrivate(BfvPublic):
    """L's two key pairs; the secret keys never leave this object."""

    def __init__(self, secret_keys: tuple[bytes, bytes] | None = None) -> None:
        super().__init__()
        if secret_keys is None:
            hist_keys = sa.KeyGenerator(self._hist.ctx)
            score_keys = sa.KeyGenerator(self._score.ctx)
        else:  # reloaded from private_bytes(): the same secret keys, fresh public keys
            hist_keys = sa.KeyGenerator(self._hist.ctx, _memfd_load(
                sa.SecretKey(), self._hist.ctx, secret_keys[0]))
            score_keys = sa.KeyGenerator(self._score.ctx, _memfd_load(
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
        return pack_frames([_CONTEXT_TAG, _memfd_save(self._hist_pk), _memfd_save(self._score_pk)])

    def private_bytes(self) -> bytes:
        """Both secret keys, for the owner's own 0600 key file (never for the wire)."""
        return pack_frames([_PRIVATE_TAG, *(_memfd_save(k) for k in self._secrets)])

    @classmethod
    def from_private_bytes(cls, data: bytes) -> BfvPrivate:
        frames = unpack_frames(data, max_frames=3)
        if len(frames) != 3 or frames[0] != _PRIVATE_TAG:
            raise ProtocolError("not a fedcredit SecureBoost BFV private key file")
        return cls((frames[1], frames[2]))

    def encrypt_chunks(self, values: np.ndarray, slots: int) -> bytes:
        """Values (< t) of consecutive rows, n' per ciphertext in coefficients 0..n'-1."""
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
            frames.append(_memfd_save(self._hist_sym.encrypt_symmetric(plain)))
        return _pack_values(_CT_TAG, flat.size, width, frames)

    def decrypt_histograms(self, data: bytes, features: int, slots: int) -> np.ndarray:
        """(features, slots) residues mod t read from the target coefficients."""
        n, frames = _unpack_values(data, _CT_TAG, 1)
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
            frames.append(_memfd_save(self._score_sym.encrypt_symmetric(plain)))
        return _pack_values(_CT_TAG, flat.size, per, frames)

    def decrypt_slots(self, data: bytes) -> np.ndarray:
        per = self.slot_count
        n, frames = _unpack_values(data, _CT_TAG, per)
        values = []
        for frame in frames:
            plain = sa.Plaintext()
            self._score_dec.decrypt(self._score.ciphertext(frame), plain)
            values.append(np.asarray(self._encoder.decode_uint64(plain), dtype=np.uint64))
        return np.concatenate(values)[:n]


BFV_SUITE = SbtSuite("bfv", BfvPrivate, BfvPublic.from_public_bytes)

_TESTING_TOKEN = object()
_TWIN_SCORE_MODULUS = 1099511480321  # the 40-bit batching prime the BFV scoring key uses


class PlainTwin:
    """The plaintext twin: same messages with values in the clear. Test and benchmark only.

    No configuration value or context bytes select it; `PlainTwin.suite_for_testing()` is the
    only way in, and it refuses when FEDCREDIT_PRODUCTION=1.
    """

    name = "plain-twin"

    def __init__(self, *, _token: object = None) -> None:
        if _token is not _TESTING_TOKEN:
            raise TypeError("PlainTwin is test-only: use PlainTwin.suite_for_testing()")
        self.plain_modulus = 1 << HIST_PLAIN_BITS
        self.score_modulus = _TWIN_SCORE_MODULUS

    @classmethod
    def suite_for_testing(cls) -> SbtSuite:
        if os.environ.get(PRODUCTION_ENV) == "1":
            raise RuntimeError(f"the plaintext twin is disabled when {PRODUCTION_ENV}=1")

        def load(data: bytes) -> FeatureHe:
            if data != _PLAIN_CONTEXT:
                raise ProtocolError("not a plain-twin context")
            return cls(_token=_TESTING_TOKEN)

        return SbtSuite("plain-twin", lambda: cls(_token=_TESTING_TOKEN), load)

    def public_bytes(self) -> bytes:
        return _PLAIN_CONTEXT

    @staticmethod
    def _vector(values: np.ndarray, per: int) -> bytes:
        flat = np.asarray(values, dtype=np.uint64).reshape(-1)
        return _pack_values(_PLAIN_TAG, flat.size, per, [flat.astype("<u8").tobytes()])

    @staticmethod
    def _values(data: bytes, per: int) -> np.ndarray:
        frames = unpack_frames(data)
        if len(frames) != 2 or len(frames[0]) != _HEADER.size:
            raise ProtocolError("not a plain-twin vector")
        tag, n, got = _HEADER.unpack(frames[0])
        if tag != _PLAIN_TAG or got != per or len(frames[1]) != 8 * n:
            raise ProtocolError("plain-twin vector header does not match")
        return np.frombuffer(frames[1], dtype="<u8").astype(np.uint64)

    def encrypt_chunks(self, values: np.ndarray, slots: int) -> bytes:
        return self._vector(values, chunk_width(slots))

    def histograms(self, chunks: bytes, bins: np.ndarray, slots: int) -> bytes:
        values = self._values(chunks, chunk_width(slots))
        rows, features = bins.shape
        if values.size != rows:
            raise ProtocolError(f"{values.size} rows for {rows} binned rows")
        index = (np.arange(features) * slots + bins.astype(np.int64)).reshape(-1)
        lo = np.repeat((values & np.uint64((1 << 30) - 1)).astype(np.float64), features)
        hi = np.repeat((values >> np.uint64(30)).astype(np.float64), features)
        size = features * slots
        sums_lo = np.bincount(index, weights=lo, minlength=size).astype(np.uint64)
        sums_hi = np.bincount(index, weights=hi, minlength=size).astype(np.uint64)
        total = (sums_lo + (sums_hi << np.uint64(30))) & np.uint64(self.plain_modulus - 1)
        return self._vector(total, 1)

    def decrypt_histograms(self, data: bytes, features: int, slots: int) -> np.ndarray:
        values = self._values(data, 1)
        if values.size != features * slots:
            raise ProtocolError(f"expected {features}x{slots} sums")
        return values.reshape(features, slots)

    def encrypt_slots(self, values: np.ndarray) -> bytes:
        return self._vector(values, 1)

    def multiply_slots(self, data: bytes, factors: np.ndarray) -> bytes:
        v, f = self._values(data, 1), np.asarray(factors, dtype=np.uint64).reshape(-1)
        if f.size != v.size:
            raise ProtocolError("factor count differs from the slot count")
        t = np.uint64(self.score_modulus)
        lo = (v * (f & np.uint64(0xFFFFF))) % t
        hi = ((v * (f >> np.uint64(20))) % t) * np.uint64(1 << 20) % t
        return self._vector((lo + hi) % t, 1)

    def add_slots(self, parts: Sequence[bytes]) -> bytes:
        vectors = [self._values(p, 1) for p in parts]
        if not vectors or len({v.size for v in vectors}) != 1:
            raise ProtocolError("cannot add slot vectors of different lengths")
        total = np.zeros_like(vectors[0])
        for v in vectors:
            total = (total + v) % np.uint64(self.score_modulus)
        return self._vector(total, 1)

    def decrypt_slots(self, data: bytes) -> np.ndarray:
        return self._values(data, 1)

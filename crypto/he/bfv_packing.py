"""BFV coefficient-packed histogram products in numpy: exact negacyclic FFT over 20-bit limbs.

Bit-identical to SEAL's multiply_plain by the 0/1 bin polynomials (tests/unit/crypto/he/
test_bfv.py); only public plaintext-times-ciphertext arithmetic happens here.
"""

from __future__ import annotations

import numpy as np

from common.errors import ProtocolError
from crypto.he.bfv_ring import RING_DEGREE, add_mod, chunk_width

_LIMB_BITS = 20


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
        result = add_mod(_mul_pow2_mod(result, _LIMB_BITS, q, delta), limb[s], q)
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

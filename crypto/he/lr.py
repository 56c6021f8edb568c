"""CKKS for label-private vertical LR: encrypted weights, diagonal products, masked refreshes.

Weights live in one ciphertext, replicated with period P (a power of two >= the party's width):
slot s holds w[s mod P]. A batch of b <= S rows of X (padded to P columns) is kept as its P
generalised diagonals diag_k[s] = X[s, (s + k) mod P] (zero beyond row b), encoded once and used
twice, with baby-step giant-step rotations (k = a*m + c; only power-of-two rotation keys):

    forward   [u] = sum_a rot( sum_c D[a,c] * rot([w], c), a*m )      u[s] = sum_j X[s,j] w_j
    gradient  [z] = sum_c rot( sum_a D[a,c] * rot([d], -a*m), -c ),  then z += rot(z, P*2^i)
              which leaves sum_i X[i, j] d[i] in every slot s = j (mod P): the weights' layout.

with D[a,c] = rot(diag_{a*m+c}, -a*m). Nothing is ever rescaled: every ciphertext stays at the top
level and only its scale grows (weights S_w, products S_w * S_x, gradients S_w * S_x^2), so the
arbiter can bring a masked gradient back to S_w (`crypto.he.lr_arbiter.refresh`) and the weights
never lose a level. A ciphertext's scale is metadata: `relabel` multiplies it by f, dividing the
value it stands for by f (how 1/4 and the learning rate enter without a multiplication).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import tenseal.sealapi as sa

from common.errors import ProtocolError
from crypto.he import lr_coeffs, seal_bytes
from crypto.he.ckks import load_public_context, public_context_bytes
from crypto.he.frames import pack_vector, unpack_vector
from crypto.he.interface import Prepared, as_vector
from crypto.he.params import CkksParams

LR_TAG = b"CKLR"


def period_for(width: int) -> int:
    """The replication period of a party's weights: the smallest power of two >= width."""
    if width < 1:
        raise ValueError("a party has at least one weight")
    return 1 << (width - 1).bit_length()


def baby_steps(period: int) -> int:
    """m in k = a*m + c: a power of two near sqrt(P)."""
    return 1 << ((period.bit_length() - 1 + 1) // 2)


def diagonals(x: np.ndarray, period: int, slots: int) -> np.ndarray:
    """(P, S) pre-rotated diagonals D[a*m+c] = rot(diag_{a*m+c}, -a*m) of a batch x (b, p)."""
    b, p = x.shape
    if b > slots or p > period or slots % period:
        raise ValueError(f"batch {x.shape} does not fit period {period} and {slots} slots")
    padded = np.zeros((slots, period))
    padded[:b, :p] = x
    s = np.arange(slots)
    m = baby_steps(period)
    out = np.empty((period, slots))
    for k in range(period):
        diag = padded[s, (s + k) % period]
        out[k] = np.roll(diag, (k // m) * m)  # rot(v, -t) is np.roll(v, t)
    return out


def replicate(values: np.ndarray, period: int, slots: int) -> np.ndarray:
    """slot s <- values[s mod P] (values padded with zeros to P)."""
    padded = np.zeros(period)
    padded[: values.size] = values
    return np.tile(padded, slots // period)


class CkksLr:
    """One party's (or the arbiter's) CKKS context for label-private LR; bytes in, bytes out."""

    name = "ckks"

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx
        self.params = CkksParams.of_context(ctx)
        seal = ctx.seal_context().data
        self._seal = seal
        self._encoder = sa.CKKSEncoder(seal)
        self._ev = sa.Evaluator(seal)
        self._encryptor = sa.Encryptor(seal, ctx.public_key().data)
        self._galois = ctx.galois_keys().data if ctx.has_galois_keys() else None
        self._relin = ctx.relin_keys().data if ctx.has_relin_keys() else None
        self._decryptor = (
            sa.Decryptor(seal, ctx.secret_key().data) if ctx.is_private() else None
        )
        self.top = seal.first_parms_id()
        self.primes = [int(q.value()) for q in seal.first_context_data().parms().coeff_modulus()]

    @classmethod
    def from_public_bytes(cls, data: bytes) -> CkksLr:
        return cls(load_public_context(data))

    # --- plumbing ---------------------------------------------------------------------------

    @property
    def slot_count(self) -> int:
        return int(self._encoder.slot_count())

    @property
    def can_decrypt(self) -> bool:
        return self._decryptor is not None

    @property
    def seal(self) -> Any:
        return self._seal

    def public_bytes(self) -> bytes:
        return public_context_bytes(self._ctx, relin_keys=self._relin is not None)

    def key_id(self) -> bytes:
        """A digest of the public key as loaded (a context's own serialisation is not canonical:
        a fresh key is saved seeded, a loaded one expanded)."""
        return hashlib.sha256(seal_bytes.save(self._ctx.public_key().data)).digest()

    def encode(self, values: np.ndarray, scale: float) -> Any:
        pt = sa.Plaintext()
        self._encoder.encode(np.ascontiguousarray(values, dtype=np.float64), self.top, scale, pt)
        return pt

    def load_ct(self, data: bytes) -> Any:
        ct = seal_bytes.load(sa.Ciphertext(self._seal), self._seal, data, "ciphertext")
        if ct.size() != 2 or not ct.is_ntt_form() or ct.parms_id() != self.top:
            raise ProtocolError("ciphertext refused: expected size 2, NTT form, the top level")
        return ct

    def pack(self, cts: Sequence[Any]) -> bytes:
        s = self.slot_count
        return pack_vector(LR_TAG, len(cts) * s, s, [seal_bytes.save(c) for c in cts])

    def unpack(self, data: bytes) -> list[Any]:
        _, chunks = unpack_vector(data, LR_TAG, self.slot_count)
        return [self.load_ct(c) for c in chunks]

    def _rot(self, ct: Any, step: int) -> Any:
        if self._galois is None:
            raise ProtocolError("context has no Galois keys: cannot rotate")
        out = sa.Ciphertext(self._seal)
        self._ev.rotate_vector(ct, step, self._galois, out)
        return out

    def _acc(self, terms: Sequence[tuple[Any, Any]]) -> Any:
        acc, tmp = sa.Ciphertext(self._seal), sa.Ciphertext(self._seal)
        self._ev.multiply_plain(terms[0][0], terms[0][1], acc)
        for ct, pt in terms[1:]:
            self._ev.multiply_plain(ct, pt, tmp)
            self._ev.add_inplace(acc, tmp)
        return acc

    # --- what the parties do ----------------------------------------------------------------

    def encrypt(self, values: np.ndarray, scale: float) -> bytes:
        """Encrypt values (padded to whole ciphertexts of S slots) at `scale`."""
        flat, s = as_vector(values), self.slot_count
        cts = []
        for i in range(0, flat.size, s):
            chunk = np.zeros(s)
            chunk[: min(s, flat.size - i)] = flat[i : i + s]
            ct = sa.Ciphertext(self._seal)
            self._encryptor.encrypt(self.encode(chunk, scale), ct)
            cts.append(ct)
        return self.pack(cts)

    def prepare(self, x: np.ndarray, period: int, scale: float) -> Prepared:
        """Encode a batch's diagonals once (forward and gradient share them)."""
        diags = diagonals(np.asarray(x, dtype=np.float64), period, self.slot_count)
        native = [self.encode(d, scale) if np.any(d) else None for d in diags]
        count = sum(p is not None for p in native)
        nbytes = count * self.params.poly_modulus_degree * len(self.primes) * 8
        return Prepared(self.name, (1, period, self.slot_count), nbytes, native)

    def _bsgs(self, ct: Any, prepared: Prepared, baby_step: int, n_baby: int, giant_step: int,
              index: Callable[[int, int], int]) -> Any:
        """sum over g of rot( sum over b of D[index(g, b)] * rot(ct, b * baby_step), g *
        giant_step ), by Horner's rule: one rotation per baby step and per giant step."""
        baby = [ct]
        for _ in range(1, n_baby):
            baby.append(self._rot(baby[-1], baby_step))
        acc = None
        for g in reversed(range(prepared.shape[1] // n_baby)):
            terms = [(baby[b], prepared.native[index(g, b)]) for b in range(n_baby)
                     if prepared.native[index(g, b)] is not None]
            if acc is not None:
                acc = self._rot(acc, giant_step)
            if terms:
                inner = self._acc(terms)
                if acc is None:
                    acc = inner
                else:
                    self._ev.add_inplace(acc, inner)
        if acc is None:
            raise ProtocolError("a batch of all-zero features")
        return acc

    def forward(self, weights: bytes, prepared: Prepared) -> bytes:
        """[X w] for the prepared batch (row i in slot i), at scale S_w * S_x."""
        (w,) = self.unpack(weights)
        m = baby_steps(prepared.shape[1])
        return self.pack([self._bsgs(w, prepared, 1, m, m, lambda a, c: a * m + c)])

    def gradient(self, residual: bytes, prepared: Prepared) -> bytes:
        """[X^T d] replicated with the weights' period, at scale S_d * S_x."""
        (d,) = self.unpack(residual)
        period = prepared.shape[1]
        m = baby_steps(period)
        acc = self._bsgs(d, prepared, -m, period // m, -1, lambda c, a: a * m + c)
        step = period
        while step < self.slot_count:
            self._ev.add_inplace(acc, self._rot(acc, step))
            step *= 2
        return self.pack([acc])

    def add(self, parts: Sequence[bytes], plain: np.ndarray | None = None) -> bytes:
        """Chunk-wise sum of encrypted vectors at one scale, plus a plaintext vector."""
        if not parts:
            raise ValueError("nothing to add")
        acc = self.unpack(parts[0])
        for part in parts[1:]:
            other = self.unpack(part)
            if len(other) != len(acc):
                raise ProtocolError(f"cannot add vectors of {len(acc)} and {len(other)} chunks")
            for a, b in zip(acc, other, strict=True):
                if not math.isclose(a.scale, b.scale, rel_tol=1e-9):
                    raise ProtocolError("cannot add ciphertexts at different scales")
                self._ev.add_inplace(a, b)
        if plain is not None:
            self._add_plain(acc, plain, 1.0)
        return self.pack(acc)

    def _add_plain(self, cts: list[Any], plain: np.ndarray, sign: float) -> None:
        s = self.slot_count
        flat = np.zeros(len(cts) * s)
        values = as_vector(plain)
        if values.size > flat.size:
            raise ValueError(f"{values.size} plain values for {len(cts)} ciphertexts")
        flat[: values.size] = sign * values
        for i, ct in enumerate(cts):
            self._ev.add_plain_inplace(ct, self.encode(flat[i * s : (i + 1) * s], ct.scale))

    def add_product(self, acc: bytes, vector: bytes, factors: np.ndarray) -> bytes:
        """[acc] + factors * [vector] (one chunk each; the product lands at acc's scale)."""
        (a,), (v,) = self.unpack(acc), self.unpack(vector)
        prod = sa.Ciphertext(self._seal)
        self._ev.multiply_plain(v, self.encode(factors, a.scale / v.scale), prod)
        self._ev.add_inplace(a, prod)
        return self.pack([a])

    def subtract(self, a: bytes, b: bytes) -> bytes:
        (x,), (y,) = self.unpack(a), self.unpack(b)
        if not math.isclose(x.scale, y.scale, rel_tol=1e-9):
            raise ProtocolError("cannot subtract ciphertexts at different scales")
        self._ev.sub_inplace(x, y)
        return self.pack([x])

    def concat(self, parts: Sequence[bytes]) -> bytes:
        """One vector of every chunk of `parts`, in order."""
        return self.pack([ct for part in parts for ct in self.unpack(part)])

    def relabel(self, data: bytes, factor: float) -> bytes:
        """Multiply every chunk's scale by `factor`: the values it stands for divide by it."""
        cts = self.unpack(data)
        for ct in cts:
            ct.scale = ct.scale * factor
        return self.pack(cts)

    def scales(self, data: bytes) -> list[float]:
        return [float(ct.scale) for ct in self.unpack(data)]

    def mask(self, data: bytes, bound: float) -> tuple[bytes, list[list[int]]]:
        """Add a fresh integer mask to every chunk: coefficients uniform in +-(scale * bound),
        so every slot value v with |v| <= bound / 2^40 is hidden to 2^-40. Returns the masks."""
        cts, masks = self.unpack(data), []
        room = sum(q.bit_length() for q in self.primes) - 2  # centred, and a sum of two
        for i, ct in enumerate(cts):
            limit = int(float(ct.scale) * bound)
            if limit.bit_length() > room:
                raise ProtocolError(
                    f"a mask of 2^{math.log2(bound):.0f} at scale 2^{math.log2(ct.scale):.0f} "
                    f"needs {limit.bit_length()} bits; the ring has {room} at the top level")
            coeffs = lr_coeffs.uniform_coefficients(self.params.poly_modulus_degree, limit)
            cts[i] = lr_coeffs.shift(self, ct, lr_coeffs.to_ntt(self, coeffs), +1)
            masks.append(coeffs)
        return self.pack(cts), masks

    def unmask(self, data: bytes, masks: Sequence[Sequence[int]],
               ratio: Fraction = Fraction(1)) -> bytes:
        """Remove masks added before the arbiter scaled the chunks by `ratio` (exactly)."""
        cts = self.unpack(data)
        if len(masks) != len(cts):
            raise ProtocolError(f"{len(cts)} chunks for {len(masks)} masks")
        return self.pack([
            lr_coeffs.shift(self, ct, lr_coeffs.to_ntt(self, lr_coeffs.rounded(mask, ratio)), -1)
            for ct, mask in zip(cts, masks, strict=True)])

    def square_sum(self, data: bytes, linear: np.ndarray) -> bytes:
        """[sum_i u_i^2 + linear_i * u_i] in every slot (u: the chunks of `data`)."""
        if self._relin is None:
            raise ProtocolError("context has no relinearisation keys")
        cts = self.unpack(data)
        s = self.slot_count
        total = None
        for i, ct in enumerate(cts):
            sq = sa.Ciphertext(self._seal)
            self._ev.square(ct, sq)
            self._ev.relinearize_inplace(sq, self._relin)
            lin = sa.Ciphertext(self._seal)
            self._ev.multiply_plain(ct, self.encode(linear[i * s : (i + 1) * s], ct.scale), lin)
            self._ev.add_inplace(sq, lin)
            if total is None:
                total = sq
            else:
                self._ev.add_inplace(total, sq)
        if total is None:
            raise ProtocolError("nothing to sum")
        step = 1
        while step < s:
            self._ev.add_inplace(total, self._rot(total, step))
            step *= 2
        return self.pack([total])

    def decrypt(self, data: bytes) -> np.ndarray:
        if self._decryptor is None:
            raise PermissionError("this context holds no secret key")
        out = []
        for ct in self.unpack(data):
            pt = sa.Plaintext()
            self._decryptor.decrypt(ct, pt)
            out.append(np.asarray(self._encoder.decode_double(pt), dtype=np.float64))
        return np.concatenate(out)

    # --- the arbiter's two operations (secret key) -------------------------------------------

    def decrypt_plain(self, ct: Any) -> Any:
        if self._decryptor is None:
            raise PermissionError("this context holds no secret key")
        pt = sa.Plaintext()
        self._decryptor.decrypt(ct, pt)
        return pt

    def encrypt_plain(self, pt: Any, scale: float) -> Any:
        ct = sa.Ciphertext(self._seal)
        self._encryptor.encrypt(pt, ct)
        ct.scale = scale
        return ct

    def encrypt_zero(self) -> Any:
        ct = sa.Ciphertext(self._seal)
        self._encryptor.encrypt_zero(ct)
        return ct

    @property
    def evaluator(self) -> Any:
        return self._ev

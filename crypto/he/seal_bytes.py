"""The one bridge to SEAL's byte formats, for TenSEAL 0.3.18's `sealapi` (SEAL 4.x).

Two gaps in the public API are wrapped here and nowhere else:
* `sealapi` objects save to and load from file paths only, so bytes go through an anonymous
  memfd (`save`, `load`).
* `sealapi` cannot build a ciphertext or plaintext from raw coefficients, so
  `ciphertext_from_raw` and `plaintext_from_raw` write SEAL 4's serialisation by hand: a 16-byte
  SEALHeader (magic 0xA15E, version read from SEAL itself, no compression), the Ciphertext
  (Plaintext) members, then the DynArray stream. SEAL re-validates every coefficient on load. The
  SEAL major version is checked at import.
tests/unit/crypto/he/test_seal_bytes.py pins this behaviour (version, bit-identical round trip).
"""

from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np
import tenseal.sealapi as sa

from common.errors import ProtocolError

SEAL_MAGIC = 0xA15E
SEAL_MAJOR = 4
_HEADER = struct.Struct("<HBBBBHQ")  # magic, header size, major, minor, compression, zero, size
_CT_MEMBERS = struct.Struct("<4QBQQQdQ")  # parms_id, ntt, size, degree, primes, scale, cf
_PT_MEMBERS = struct.Struct("<4QQd")  # parms_id, coefficient count, scale


def save(obj: Any) -> bytes:
    """SEAL's serialisation of a sealapi object (ciphertext, key, plaintext)."""
    fd = os.memfd_create("fedcredit-seal", os.MFD_CLOEXEC)
    try:
        obj.save(f"/proc/self/fd/{fd}")
        with open(f"/proc/self/fd/{fd}", "rb") as handle:
            return handle.read()
    finally:
        os.close(fd)


def load(obj: Any, ctx: Any, data: bytes, what: str = "SEAL object") -> Any:
    """Load `data` into `obj` (SEAL checks it against `ctx`); ProtocolError if SEAL refuses."""
    fd = os.memfd_create("fedcredit-seal", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        try:
            obj.load(ctx, f"/proc/self/fd/{fd}")
        except (ValueError, RuntimeError, TypeError) as err:
            raise ProtocolError(f"{what} refused: {err}") from err
    finally:
        os.close(fd)
    return obj


def _seal_version() -> tuple[int, int]:
    magic, size, major, minor, _, _, _ = _HEADER.unpack(save(sa.Plaintext("1"))[: _HEADER.size])
    if magic != SEAL_MAGIC or size != _HEADER.size or major != SEAL_MAJOR:
        raise RuntimeError(
            f"SEAL serialisation {magic:#x}/{size}/v{major}.{minor} is not SEAL {SEAL_MAJOR}'s: "
            "crypto.he.seal_bytes writes SEAL 4 ciphertext streams by hand"
        )
    return major, minor


SEAL_VERSION = _seal_version()


def _stream(members: bytes) -> bytes:
    size = _HEADER.size + len(members)
    return _HEADER.pack(SEAL_MAGIC, _HEADER.size, *SEAL_VERSION, 0, 0, size) + members


def ciphertext_raw(ct: Any, polys: int | None = None) -> np.ndarray:
    """Coefficients (size, primes, N) of a ciphertext, or of its first `polys` polynomials;
    SEAL offers only element reads."""
    arr = ct.dyn_array()
    size = int(ct.size()) if polys is None else polys
    count = size * int(ct.coeff_modulus_size()) * int(ct.poly_modulus_degree())
    flat = np.fromiter(map(arr.__getitem__, range(count)), dtype=np.uint64, count=count)
    return flat.reshape(size, int(ct.coeff_modulus_size()), int(ct.poly_modulus_degree()))


def plaintext_from_raw(ctx: Any, parms_id: Any, raw: np.ndarray, scale: float) -> Any:
    """An NTT-form CKKS plaintext at `parms_id` holding `raw` (primes, N) at `scale`."""
    data = np.ascontiguousarray(raw, dtype="<u8")
    dyn = _stream(struct.pack("<Q", data.size) + data.tobytes())
    members = _PT_MEMBERS.pack(*parms_id, data.size, scale)
    return load(sa.Plaintext(), ctx, _stream(members + dyn), "plaintext")


def ciphertext_from_raw(ctx: Any, parms_id: Any, raw: np.ndarray, *, ntt: bool = False,
                        scale: float = 1.0) -> Any:
    """A ciphertext at `parms_id` holding `raw` (size, primes, N), in coefficient form unless
    `ntt`, with `scale` (1.0 for BFV)."""
    data = np.ascontiguousarray(raw, dtype="<u8")
    size, primes, degree = data.shape
    dyn = _stream(struct.pack("<Q", data.size) + data.tobytes())
    members = _CT_MEMBERS.pack(*parms_id, int(ntt), size, degree, primes, scale, 1)
    return load(sa.Ciphertext(ctx), ctx, _stream(members + dyn))

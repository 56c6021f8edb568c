"""CKKS contexts: making a key pair, serialising its public half, loading a peer's (checked).

The label-private LR backend is `crypto.he.lr`; the bank's scoring key is `crypto.he.scoring`.
"""

from __future__ import annotations

import tenseal as ts

from common.errors import ProtocolError
from crypto.he.params import CkksParams, load_tenseal_context


def make_context(
    params: CkksParams, *, galois_keys: bool = True, relin_keys: bool = True
) -> ts.Context:
    """A fresh private CKKS context (secret key inside) with Galois and relinearisation keys."""
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
    )
    ctx.global_scale = params.scale
    if galois_keys:
        ctx.generate_galois_keys()
    if relin_keys and not ctx.has_relin_keys():
        ctx.generate_relin_keys()
    return ctx


def public_context_bytes(ctx: ts.Context, *, relin_keys: bool = True) -> bytes:
    """Serialise a context without its secret key (public key, Galois and relin keys kept)."""
    data: bytes = ctx.serialize(
        save_public_key=True,
        save_secret_key=False,
        save_galois_keys=bool(ctx.has_galois_keys()),
        save_relin_keys=relin_keys and bool(ctx.has_relin_keys()),
    )
    return data


def load_public_context(data: bytes) -> ts.Context:
    """Load a peer's public context; refuse one carrying a secret key or weak parameters."""
    what = "received CKKS context"
    ctx = load_tenseal_context(data, scheme="CKKS", private=False, what=what)
    try:
        CkksParams.of_context(ctx)
    except ValueError as err:
        raise ProtocolError(f"{what} refused: {err}") from err
    return ctx

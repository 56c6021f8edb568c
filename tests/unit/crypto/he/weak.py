"""Weak HE material for refusal tests: keys and contexts below the 128-bit bound."""

from __future__ import annotations

import tenseal as ts
import tenseal.sealapi as sa

from crypto.he import seal_bytes


def weak_seal_context(scheme: sa.SCHEME_TYPE, degree: int, bits: list[int]) -> sa.SEALContext:
    """A SEAL context made with the security check switched off."""
    parms = sa.EncryptionParameters(scheme)
    parms.set_poly_modulus_degree(degree)
    parms.set_coeff_modulus(sa.CoeffModulus.Create(degree, bits))
    if scheme == sa.SCHEME_TYPE.BFV:
        parms.set_plain_modulus(sa.Modulus(1 << 20))
    ctx = sa.SEALContext(parms, True, sa.SEC_LEVEL_TYPE.NONE)
    assert ctx.parameters_set()
    return ctx


def weak_public_key(scheme: sa.SCHEME_TYPE, degree: int, bits: list[int]) -> bytes:
    ctx = weak_seal_context(scheme, degree, bits)
    public = sa.PublicKey()
    sa.KeyGenerator(ctx).create_public_key(public)
    return seal_bytes.save(public)


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        value, shift, i = value | (byte & 0x7F) << shift, shift + 7, i + 1
        if byte < 0x80:
            return value, i


def _enc_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _replace_bytes_fields(message: bytes, new: dict[int, bytes], read: int = 0) -> bytes:
    """Re-encode a protobuf message with some length-delimited fields replaced (or, with
    `read`, return that field's bytes)."""
    out, i = b"", 0
    while i < len(message):
        key, j = _varint(message, i)
        wire = key & 7
        if wire == 2:
            n, j = _varint(message, j)
            value, end = message[j : j + n], j + n
            if key >> 3 == read:
                return value
            value = new.get(key >> 3, value)
            out += _enc_varint(key) + _enc_varint(len(value)) + value
        else:
            end = j + {0: 0, 1: 8, 5: 4}[wire]
            if wire == 0:
                _, end = _varint(message, j)
            out += message[i:end]
        i = end
    return out


def _bytes_field(message: bytes, field: int) -> bytes:
    return _replace_bytes_fields(message, {}, read=field)


def over_bound_ckks_context(degree: int = 4096, bits: tuple[int, ...] = (60, 60)) -> bytes:
    """A public TenSEAL context (TenSEALContextProto) whose parameters and key exceed the
    128-bit bound: TenSEAL itself cannot make one, so a good context's proto fields are
    rewritten (1 = encryption parameters; 2 = public part, whose field 1 is the public key)."""
    template = ts.context(ts.SCHEME_TYPE.CKKS, 4096, coeff_mod_bit_sizes=[60, 49])
    data = template.serialize(
        save_secret_key=False, save_galois_keys=False, save_relin_keys=False
    )
    weak = weak_seal_context(sa.SCHEME_TYPE.CKKS, degree, list(bits))
    public = weak_public_key(sa.SCHEME_TYPE.CKKS, degree, list(bits))
    public_part = _replace_bytes_fields(_bytes_field(data, 2), {1: public})
    parms = seal_bytes.save(weak.key_context_data().parms())
    return _replace_bytes_fields(data, {1: parms, 2: public_part})

"""Homomorphic encryption in one place: CKKS (VLR training), BFV (SecureBoost), their plaintext
twins, the bank's scoring context, the 128-bit parameter check and the one bridge to SEAL's bytes.

    params      ring parameters, `check_128_bit`, `load_tenseal_context` (every context load)
    seal_bytes  SEAL 4 serialisation via memfd and a hand-written ciphertext stream
    frames      frame lists and encrypted-vector headers
    interface   the protocols algorithms program against (LrHe/LrSuite, LabelHe/FeatureHe/SbtSuite)
    lr          label-private LR: encrypted weights, diagonal products, masks (CkksLr)
    lr_arbiter  the arbiter's exact refresh / re-encryption (CKKS_LR_SUITE); lr_coeffs the
                integer polynomials both use; lr_plain its twin (PLAIN_LR_SUITE, test-only)
    ckks        making and loading CKKS contexts  bfv, bfv_ring, bfv_packing   BfvPublic/Private
    plain       PlainTwin (SecureBoost, test-only) scoring  the bank's scoring CKKS key
"""

from crypto.he.bfv import BFV_SUITE, BfvPrivate, BfvPublic
from crypto.he.bfv_ring import random_nonzero
from crypto.he.frames import pack_frames, unpack_frames
from crypto.he.interface import FeatureHe, LabelHe, Prepared, SbtSuite
from crypto.he.params import MAX_COEFF_BITS_128, CkksParams, check_128_bit
from crypto.he.plain import PRODUCTION_ENV, PlainTwin

__all__ = [
    "BFV_SUITE",
    "MAX_COEFF_BITS_128",
    "PRODUCTION_ENV",
    "BfvPrivate",
    "BfvPublic",
    "CkksParams",
    "FeatureHe",
    "LabelHe",
    "PlainTwin",
    "Prepared",
    "SbtSuite",
    "check_128_bit",
    "pack_frames",
    "random_nonzero",
    "unpack_frames",
]

"""Homomorphic encryption in one place: CKKS (VLR training), BFV (SecureBoost), their plaintext
twins, the bank's scoring context, the 128-bit parameter check and the one bridge to SEAL's bytes.

    params      ring parameters, `check_128_bit`, `load_tenseal_context` (every context load)
    seal_bytes  SEAL 4 serialisation via memfd and a hand-written ciphertext stream
    frames      frame lists and encrypted-vector headers
    interface   the protocols algorithms program against (HeBackend/HeSuite, LabelHe/FeatureHe/
                SbtSuite)
    ckks        CkksBackend, CKKS_SUITE            bfv, bfv_ring, bfv_packing   BfvPublic/Private
    plain       PlainBackend, PlainTwin (test-only) scoring  the bank's scoring CKKS key
"""

from crypto.he.bfv import BFV_SUITE, BfvPrivate, BfvPublic
from crypto.he.bfv_ring import random_nonzero
from crypto.he.ckks import CKKS_SUITE, CkksBackend
from crypto.he.frames import pack_frames, unpack_frames
from crypto.he.interface import FeatureHe, HeBackend, HeSuite, LabelHe, Prepared, SbtSuite
from crypto.he.params import MAX_COEFF_BITS_128, CkksParams, check_128_bit
from crypto.he.plain import PRODUCTION_ENV, PlainBackend, PlainTwin

__all__ = [
    "BFV_SUITE",
    "CKKS_SUITE",
    "MAX_COEFF_BITS_128",
    "PRODUCTION_ENV",
    "BfvPrivate",
    "BfvPublic",
    "CkksBackend",
    "CkksParams",
    "FeatureHe",
    "HeBackend",
    "HeSuite",
    "LabelHe",
    "PlainBackend",
    "PlainTwin",
    "Prepared",
    "SbtSuite",
    "check_128_bit",
    "pack_frames",
    "random_nonzero",
    "unpack_frames",
]

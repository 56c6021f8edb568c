"""Joint scoring's shared wire: the bank's signed set-up and the sealed pseudonym lists.

The set-up (the bank's public CKKS context and the model's public context) is one byte string
the bank signs with its certificate key; the coordinator forwards the same bytes to every feature
node, so every node encrypts under one key and the relay cannot swap it. A request's pseudonyms
(`crypto.pseudonym`) go to each feature node sealed end to end, with a fresh salt, bound to
(model job, bank, node, request number): the coordinator, which holds the pseudonym key, never
sees a pseudonym.
"""

from __future__ import annotations

import hashlib

from crypto.consent import SALT_BYTES
from crypto.he import pack_frames
from crypto.pseudonym import PSEUDONYM_BYTES
from crypto.seal import OVERHEAD

SETUP_DOMAIN = b"fedcredit/score-setup/v2\x00"
STALE_KEY = "evaluate them again"  # ends the coordinator's refusal of pseudonyms under an old key
SETUP_TAG = b"FCSS2"


def setup_payload(model_job: str, bank: str, context: bytes, model_context: bytes) -> bytes:
    """The bytes the bank signs for a set-up: bound to its model job and to the bank."""
    return pack_frames([SETUP_TAG, model_job.encode(), bank.encode(), context, model_context])


def setup_digest(payload: bytes) -> str:
    """Names a set-up (hex SHA-256); consent records carry it, so every node uses one set-up."""
    return hashlib.sha256(payload).hexdigest()


def ids_seal_context(model_job: str, bank: str, node: str, request_no: int) -> bytes:
    """Binds a sealed pseudonym list to its request and direction (no replay to another node)."""
    return f"score-ids|v2|{model_job}|{request_no}|{bank}>{node}".encode()


def sealed_ids_bytes(ids: int) -> int:
    """The size of a sealed list of `ids` pseudonyms with its salt."""
    return SALT_BYTES + PSEUDONYM_BYTES * ids + OVERHEAD


def ids_digest(pseudonyms: bytes) -> str:
    """A short fingerprint of a request's pseudonyms, for audit entries."""
    return hashlib.sha256(pseudonyms).hexdigest()[:16]

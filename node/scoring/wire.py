"""What the bank and its feature nodes agree on: keyed-hash ids and the sealed set-up."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from common.errors import ProtocolError
from common.limits import HASHED_ID_BYTES
from crypto.he import pack_frames, unpack_frames

MIN_ID_KEY_BYTES = 32
SETUP_TAG = b"FCSS1"


def hash_ids(key: bytes, ids: list[str]) -> bytes:
    """Keyed hashes of ids (HMAC-SHA256, 16 bytes each) under the key the nodes share."""
    return b"".join(hmac.new(key, i.encode(), hashlib.sha256).digest()[:HASHED_ID_BYTES]
                    for i in ids)


def split_ids(blob: bytes) -> list[bytes]:
    if len(blob) % HASHED_ID_BYTES or not blob:
        raise ProtocolError(f"ids blob of {len(blob)} bytes is not whole 16-byte hashes")
    return [blob[i:i + HASHED_ID_BYTES] for i in range(0, len(blob), HASHED_ID_BYTES)]


def ids_digest(hashed: bytes) -> str:
    """A short fingerprint of a request's keyed-hash ids, for audit entries."""
    return hashlib.sha256(hashed).hexdigest()[:16]


def setup_seal_context(model_job: str, bank: str, node: str) -> bytes:
    """Binds a sealed set-up to its model job and direction (no replay to another job or node)."""
    return f"score-setup|v1|{model_job}|{bank}>{node}".encode()


@dataclass(frozen=True)
class ScoringSetup:
    """What a bank gives each feature node, sealed: its id-hash key, its public CKKS context
    and the model's public context (SecureBoost: its BFV keys; LR: empty)."""

    id_key: bytes
    context: bytes
    model_context: bytes

    def encode(self) -> bytes:
        return pack_frames([SETUP_TAG, self.id_key, self.context, self.model_context])

    @classmethod
    def decode(cls, data: bytes) -> ScoringSetup:
        try:
            frames = unpack_frames(data, max_frames=4)
        except (ValueError, ProtocolError) as err:
            raise ProtocolError(f"scoring set-up payload is malformed: {err}") from err
        if len(frames) != 4 or frames[0] != SETUP_TAG:
            raise ProtocolError("scoring set-up payload is malformed")
        if len(frames[1]) < MIN_ID_KEY_BYTES:
            raise ProtocolError("the scoring id key must be at least 32 bytes")
        return cls(id_key=frames[1], context=frames[2], model_context=frames[3])

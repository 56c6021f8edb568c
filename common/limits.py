"""Sizes both ends of a scoring stream check before buffering it (keyed hashes, contexts, parts)."""

HASHED_ID_BYTES = 16  # a keyed hash of one id (HMAC-SHA256, truncated)
MAX_SCORE_IDS = 4_000_000  # keyed hashes in one scoring request (64 MB)
MAX_CONTEXT_BYTES = 64 * 1024 * 1024  # one public context (CKKS, or a model's own)
MAX_PART_BYTES = 2 * 1024 * 1024 * 1024  # a model's request, or any encrypted answer

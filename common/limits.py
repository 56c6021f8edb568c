"""Sizes checked before anything is buffered: scoring streams, step payloads, any stream."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

HASHED_ID_BYTES = 16  # a keyed hash of one id (HMAC-SHA256, truncated)
MAX_SCORE_IDS = 4_000_000  # keyed hashes in one scoring request (64 MB)
MAX_CONTEXT_BYTES = 64 * 1024 * 1024  # one public context (CKKS, or a model's own)
MAX_PART_BYTES = 2 * 1024 * 1024 * 1024  # a model's request, or any encrypted answer
MAX_PSI_CHUNKS = 1_000_000  # sealed chunks in one PSI stream (each under the message limit)

# SecureBoost moves ~400 MB per tree in total; one step's parts stay well under this.
MAX_STEP_BYTES = 1024 * 1024 * 1024
MAX_STEP_PARTS = 4096
# Any one incoming stream: room for a scoring request (ids + model request) or a PSI run.
MAX_STREAM_BYTES = 3 * 1024 * 1024 * 1024
MAX_STREAM_MESSAGES = 2_000_000


class WireLimits(BaseModel):
    """The `[limits]` table of a node's or the coordinator's config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_step_bytes: int = Field(default=MAX_STEP_BYTES, gt=0)
    """Total bytes of one step's named parts (a RunStep request or reply)."""
    max_step_parts: int = Field(default=MAX_STEP_PARTS, gt=0)
    """Parts in one step (each at most 2 MiB)."""
    max_stream_bytes: int = Field(default=MAX_STREAM_BYTES, gt=0)
    """Total bytes of any one incoming stream, counted message by message."""
    max_stream_messages: int = Field(default=MAX_STREAM_MESSAGES, gt=0)
    """Messages in any one incoming stream."""

"""Arbiter A of vertical LR (the coordinator): holds the training key, decrypts masked gradients."""

from __future__ import annotations

from common.errors import ProtocolError
from crypto.he import CKKS_SUITE, CkksParams, HeSuite, unpack_frames
from crypto.masks import DEFAULT_DECIMALS, round_decrypted
from models.vlr import StepCache, StepKey, decode_positions, encode_values


class Arbiter:
    """Makes the job's CKKS key pair; decrypts each party's masked gradient once per batch.

    No ciphertext outlives a batch, so a resumed job simply builds a new Arbiter (a fresh key
    pair) and re-sends its public context; the secret key is never checkpointed.
    """

    def __init__(
        self,
        job: str,
        params: CkksParams | None = None,
        *,
        suite: HeSuite = CKKS_SUITE,
        decimals: int = DEFAULT_DECIMALS,
        max_values: int = 1 << 16,
    ) -> None:
        self.job, self.decimals, self.max_values = job, decimals, max_values
        self._backend = suite.make_private(params or CkksParams(), True)
        self._public: bytes | None = None
        self._served: set[tuple[str, int, int]] = set()
        self._steps = StepCache(capacity=256)
        self.decryptions = 0

    def public_context(self) -> bytes:
        """The job's public context (public, Galois and relin keys; no secret key)."""
        if self._public is None:
            self._public = self._backend.public_bytes()
        return self._public

    def decrypt_gradient(self, key: StepKey, party: str, request: bytes) -> bytes:
        """Decrypt a party's masked gradient request; return the wanted slots, rounded (float64)."""
        if key.job != self.job or key.step != "gradient":
            raise ProtocolError(f"step {key} is not a gradient decryption of job {self.job}")
        cache_key = (party, key)
        cached = self._steps.lookup(cache_key, request)
        if cached is not None:
            return cached
        served = (party, key.epoch, key.batch)
        if served in self._served:
            raise ProtocolError(f"{party} already had batch {served[1:]} decrypted")
        frames = unpack_frames(request, max_frames=2)
        if len(frames) != 2:
            raise ProtocolError("a gradient request has two frames: ciphertexts and wanted slots")
        values = self._backend.decrypt(frames[0])
        wanted = decode_positions(frames[1], values.size)
        if wanted.size > self.max_values:
            raise ProtocolError(f"{wanted.size} values wanted, more than {self.max_values}")
        answer = encode_values(round_decrypted(values[wanted], self.decimals))
        self._served.add(served)
        self.decryptions += 1
        return self._steps.store(cache_key, request, answer)

    def state_dict(self) -> dict[str, object]:
        return {"role": "arbiter", "job": self.job, "decryptions": self.decryptions}

    def load_state_dict(self, state: dict[str, object]) -> None:
        if state.get("role") != "arbiter" or state.get("job") != self.job:
            raise ValueError("checkpoint is not this job's arbiter")
        self.decryptions = int(state["decryptions"])  # type: ignore[call-overload]

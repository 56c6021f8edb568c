"""Arbiter A of label-private vertical LR (the coordinator): holds the training key and performs
the two exact decryptions of `crypto.he.lr_arbiter`, each at most once per party and step."""

from __future__ import annotations

from common.errors import ProtocolError
from crypto.he import unpack_frames
from crypto.he.interface import LrArbiterHe, LrSuite
from crypto.he.lr_arbiter import CKKS_LR_SUITE
from crypto.he.params import CkksParams
from models.vlr import LR_PARAMS, StepCache, StepKey
from models.vlr.layout import VALIDATION_SCALE


class Arbiter:
    """A's side of one job. `refresh` brings masked steps (and L's masked validation logits) back
    to a working scale; `reencrypt` hands a masked value to its owner under the owner's own key.

    A sees only values masked by fresh randomness 2^mask_bits times their bound; it never decodes
    them. A resumed job needs the same key pair (the parties' weights are encrypted under it):
    the driver keeps `secret_bytes()` in the coordinator's vault until the job ends.
    """

    def __init__(self, job: str, params: CkksParams | None = None, *,
                 suite: LrSuite = CKKS_LR_SUITE, secret: bytes | None = None) -> None:
        self.job = job
        self._he: LrArbiterHe = (suite.load_arbiter(secret) if secret is not None
                                 else suite.make_arbiter(params or LR_PARAMS))
        self._public: bytes | None = None
        self._served: set[tuple[str, StepKey]] = set()
        self._steps = StepCache(capacity=256)
        self.decryptions = 0

    def public_context(self) -> bytes:
        """The job's public context (public, Galois and relin keys; no secret key)."""
        if self._public is None:
            self._public = self._he.public_bytes()
        return self._public

    def secret_bytes(self) -> bytes:
        return self._he.secret_bytes()

    def _once(self, key: StepKey, party: str, request: bytes) -> bytes | None:
        if key.job != self.job:
            raise ProtocolError(f"step {key} is not of job {self.job}")
        cached = self._steps.lookup((party, key), request)
        if cached is None and (party, key) in self._served:
            raise ProtocolError(f"{party} already had {key} decrypted")
        return cached

    def _done(self, key: StepKey, party: str, request: bytes, answer: bytes) -> bytes:
        self._served.add((party, key))
        self.decryptions += 1
        return self._steps.store((party, key), request, answer)

    def refresh_step(self, key: StepKey, party: str, request: bytes) -> bytes:
        """A party's masked weight step, brought to the weights' scale afresh."""
        if key.step != "gradient":
            raise ProtocolError(f"step {key} is not a gradient")
        cached = self._once(key, party, request)
        if cached is not None:
            return cached
        answer = self._he.refresh(request, self._he.params.scale)
        return self._done(key, party, request, answer)

    def refresh_logits(self, key: StepKey, party: str, request: bytes) -> bytes:
        """L's masked validation logits, brought to the validation scale afresh."""
        cached = self._once(key, party, request)
        if cached is not None:
            return cached
        return self._done(key, party, request, self._he.refresh(request, VALIDATION_SCALE))

    def reencrypt(self, key: StepKey, party: str, request: bytes) -> bytes:
        """A masked value and its owner's public context → the value under the owner's key."""
        cached = self._once(key, party, request)
        if cached is not None:
            return cached
        frames = unpack_frames(request, max_frames=2)
        if len(frames) != 2:
            raise ProtocolError("a re-encryption request has two frames: value and owner key")
        return self._done(key, party, request, self._he.reencrypt(frames[0], frames[1]))

    def state_dict(self) -> dict[str, object]:
        return {"role": "arbiter", "job": self.job, "decryptions": self.decryptions}

    def load_state_dict(self, state: dict[str, object]) -> None:
        if state.get("role") != "arbiter" or state.get("job") != self.job:
            raise ValueError("checkpoint is not this job's arbiter")
        self.decryptions = int(state["decryptions"])  # type: ignore[call-overload]

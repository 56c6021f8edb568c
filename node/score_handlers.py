"""Feature node side of joint scoring (DESIGN §3.5): keyed-hash lookup, budget, encrypted parts.

Which model a job trained decides the answer: `model.json` (logistic regression) -> CKKS partial
logits; `model.sbt` (SecureBoost) -> the tree part of `models.sbt.scoring` over this node's own
lookup table under the bank's BFV key (`sbt_context` in the sealed set-up), beside a CKKS
coverage vector. An SBT request's `ids` payload is the frame list [keyed hashes, the bank's
encrypted selectors]; the StepKey's epoch is the bank's request number.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import pickle
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tenseal as ts

from common.errors import ProtocolError
from crypto.he import pack_frames, unpack_frames
from crypto.he import scoring as score_he
from models.sbt import StepKey
from models.sbt.scoring import FeatureModel, FeatureScorer, rows_values
from models.vlr.scoring import PartyModel
from node.alignment import check_job_id
from node.state import NodeState

log = logging.getLogger(__name__)

HASHED_ID_BYTES = 16
DEFAULT_DAILY_BUDGET = 20


def hash_ids(key: bytes, ids: list[str]) -> bytes:
    """Keyed hashes of ids (HMAC-SHA256, 16 bytes each) under the key the nodes share."""
    return b"".join(hmac.new(key, i.encode(), hashlib.sha256).digest()[:HASHED_ID_BYTES]
                    for i in ids)


def ids_digest(hashed: bytes) -> str:
    """A short fingerprint of a request's keyed-hash ids, for audit entries."""
    return hashlib.sha256(hashed).hexdigest()[:16]


@dataclass
class ScoringSetup:
    """What a requesting bank set up at this node for one model."""

    bank: str
    model: PartyModel | None  # logistic regression
    context: ts.Context
    index: dict[bytes, int]
    sbt: FeatureModel | None = None  # SecureBoost: own lookup table, the bank's BFV key


class BudgetBook:
    """Queries per (requesting bank, enterprise, day), kept in the node's state directory."""

    def __init__(self, path: Path, daily_budget: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.daily_budget = daily_budget
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS queries (bank TEXT, hid BLOB, day TEXT, "
                         "n INTEGER, PRIMARY KEY (bank, hid, day))")
        self._lock = threading.Lock()

    def charge(self, bank: str, hashed: list[bytes]) -> None:
        """Count one query for each enterprise, or refuse all of them if any is over budget."""
        day = dt.datetime.now(dt.UTC).date().isoformat()
        with self._lock:
            used: dict[bytes, int] = {}
            for start in range(0, len(hashed), 900):
                chunk = hashed[start:start + 900]
                marks = ",".join("?" * len(chunk))
                used.update(self._db.execute(
                    f"SELECT hid, n FROM queries WHERE bank=? AND day=? AND hid IN ({marks})",  # noqa: S608
                    (bank, day, *chunk)).fetchall())
            over = sum(1 for h in set(hashed) if used.get(h, 0) >= self.daily_budget)
            if over:
                raise ProtocolError(f"query budget spent: {over} of {len(set(hashed))} "
                                    f"enterprises were already scored {self.daily_budget} "
                                    f"times today by {bank}")
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO queries VALUES (?,?,?,1) ON CONFLICT(bank, hid, day) "
                "DO UPDATE SET n = n + 1", [(bank, h, day) for h in set(hashed)])
            self._db.execute("COMMIT")


class ScoreRunner:
    """Feature node: answer scoring requests relayed by the coordinator."""

    def __init__(self, state: NodeState, daily_budget: int = DEFAULT_DAILY_BUDGET) -> None:
        self.state = state
        self.setups: dict[tuple[str, str], ScoringSetup] = {}
        self.budget = BudgetBook(state.state_dir / "scoring" / "budget.sqlite", daily_budget)
        self._lock = threading.Lock()

    def _dir(self, bank: str, job: str) -> Path:
        return self.state.state_dir / "scoring" / f"{bank}--{check_job_id(job)}"

    def setup(self, bank: str, job: str, sealed_payload: bytes) -> None:
        """Store the bank's public scoring context and id key; index our ids under that key."""
        settings = _decode_setup(sealed_payload)
        folder = self._dir(bank, job)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "setup.bin"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(sealed_payload)
        tmp.chmod(0o600)
        tmp.replace(path)
        self._load(bank, job, settings)
        self.state.audit.append("score.setup", job=job, peer=bank, purpose="joint scoring")

    def _load(self, bank: str, job: str, settings: dict[str, Any]) -> ScoringSetup:
        folder = self.state.state_dir / "models" / check_job_id(job)
        model, sbt = None, None
        if (folder / "model.json").exists():
            model = PartyModel.load(folder / "model.json")
        elif (folder / "model.sbt").exists():
            if "sbt_context" not in settings:
                raise ProtocolError("a SecureBoost scoring set-up needs the bank's BFV context")
            with (folder / "model.sbt").open("rb") as f:
                saved = pickle.load(f)  # noqa: S301 - this node's own model file
            sbt = FeatureModel.from_saved(saved, bytes.fromhex(settings["sbt_context"]))
        else:
            raise ProtocolError(f"{self.state.party} holds no part of a model trained by job "
                                f"{job}")
        key = bytes.fromhex(settings["id_key"])
        hashed = hash_ids(key, self.state.table.ids)
        index = {hashed[i * HASHED_ID_BYTES:(i + 1) * HASHED_ID_BYTES]: i
                 for i in range(self.state.table.rows)}
        setup = ScoringSetup(bank=bank, model=model,
                             context=score_he.load_context(bytes.fromhex(settings["context"]),
                                                           private=False), index=index, sbt=sbt)
        with self._lock:
            self.setups[(bank, job)] = setup
        return setup

    def _setup_for(self, bank: str, job: str) -> ScoringSetup:
        with self._lock:
            found = self.setups.get((bank, job))
        if found is not None:
            return found
        path = self._dir(bank, job) / "setup.bin"
        if not path.exists():
            raise ProtocolError(f"scoring of model job {job} is not set up for {bank}")
        return self._load(bank, job, _decode_setup(path.read_bytes()))

    def partial(self, bank: str, job: str, request: dict[str, Any], ids_blob: bytes) -> bytes:
        """Encrypted answer for each requested keyed-hash id: (partial logit, coverage) for a
        logistic regression model; [coverage frames, tree part] for a SecureBoost one."""
        consent = str(request.get("consent", "")).strip()
        if not consent:
            self.state.audit.append("score.refused", job=job, peer=bank, purpose="joint scoring",
                                    details={"reason": "no consent reference"})
            raise ProtocolError("a scoring request needs the enterprise's consent reference")
        setup = self._setup_for(bank, job)
        sbt_request = b""
        if setup.sbt is not None:
            frames = unpack_frames(ids_blob, max_frames=2)
            if len(frames) != 2:
                raise ProtocolError("a SecureBoost scoring request has ids and selectors")
            ids_blob, sbt_request = frames
        if len(ids_blob) % HASHED_ID_BYTES or not ids_blob:
            raise ProtocolError(f"ids blob of {len(ids_blob)} bytes is not whole 16-byte hashes")
        hashed = [ids_blob[i:i + HASHED_ID_BYTES]
                  for i in range(0, len(ids_blob), HASHED_ID_BYTES)]
        try:
            self.budget.charge(bank, hashed)
        except ProtocolError as err:
            self.state.audit.append("score.refused", job=job, peer=bank, consent=consent,
                                    purpose=str(request.get("purpose", "")),
                                    rows=len(hashed), details={"reason": str(err)})
            raise
        rows = np.fromiter((setup.index.get(h, -1) for h in hashed), dtype=np.int64,
                           count=len(hashed))
        present = rows >= 0
        if setup.sbt is not None:
            answer = self._tree_part(setup, job, request, rows, sbt_request)
        else:
            assert setup.model is not None
            values = self.state.table.X[np.where(present, rows, 0)]
            logits = setup.model.partial_logits(values, present)
            answer = pack_frames(score_he.encrypt_partials(setup.context, logits,
                                                           present.astype(float)))
        digest = ids_digest(ids_blob)
        self.state.audit.append(
            "score", job=job, peer=bank, consent=consent, purpose=str(request.get("purpose", "")),
            rows=len(hashed),
            details={"ids_digest": digest, "covered": int(present.sum()),
                     **({"hashed_id": hashed[0].hex()} if len(hashed) == 1 else {})})
        return answer

    def _tree_part(self, setup: ScoringSetup, job: str, request: dict[str, Any],
                   rows: np.ndarray, sbt_request: bytes) -> bytes:
        """SecureBoost: own splits on own rows (unknown id: missing direction) + coverage."""
        assert setup.sbt is not None
        number = request.get("request_no")
        if not isinstance(number, int) or not 0 <= number < 2**32:
            raise ProtocolError("a SecureBoost scoring request needs its request number")
        key = StepKey(job, number, 0, "score")
        part = FeatureScorer(setup.sbt).score(key, sbt_request,
                                              rows_values(self.state.table.X, rows))
        present = rows >= 0
        coverage = score_he.encrypt_partials(setup.context, np.zeros(rows.size),
                                             present.astype(float))
        return pack_frames([pack_frames(coverage), part])


def _decode_setup(payload: bytes) -> dict[str, Any]:
    try:
        settings: dict[str, Any] = json.loads(payload)
        bytes.fromhex(settings["id_key"])
        bytes.fromhex(settings["context"])
        bytes.fromhex(settings.get("sbt_context", ""))
    except (ValueError, KeyError, TypeError) as err:
        raise ProtocolError(f"scoring set-up payload is malformed: {err}") from err
    if len(bytes.fromhex(settings["id_key"])) < 32:
        raise ProtocolError("the scoring id key must be at least 32 bytes")
    return settings

"""The coordinator's store (SQLite): node registry, jobs, models, audit anchors and pseudonym
evaluations counted per node and day. Never an id or a raw value."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import DataValidationError
from common.sqlite import open_store
from crypto.anchor import Anchor

SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    party TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    rows INTEGER NOT NULL,
    schema_json TEXT NOT NULL,
    cert_pem BLOB NOT NULL,
    sealing_public_key BLOB NOT NULL,
    signature BLOB NOT NULL,
    registered_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    parties_json TEXT NOT NULL,
    config_json TEXT NOT NULL DEFAULT '{}',
    metrics_json TEXT NOT NULL DEFAULT '{}',
    error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    model_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    algorithm TEXT NOT NULL,
    job_id TEXT NOT NULL,
    parties_json TEXT NOT NULL,
    metrics_json TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (name, version)
);
CREATE TABLE IF NOT EXISTS anchors (
    party TEXT NOT NULL,
    seq INTEGER NOT NULL,
    entry_hash TEXT NOT NULL,
    time_unix INTEGER NOT NULL,
    signature BLOB NOT NULL,
    cert_pem BLOB NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (party, seq)
);
CREATE TABLE IF NOT EXISTS pseudonym_evaluations (
    party TEXT NOT NULL,
    day TEXT NOT NULL,
    points INTEGER NOT NULL,
    PRIMARY KEY (party, day)
);
"""


@dataclass(frozen=True)
class NodeRecord:
    """A registered node as the coordinator keeps it."""

    party: str
    role: str
    endpoint: str
    rows: int
    schema: dict[str, Any]
    cert_pem: bytes
    sealing_public_key: bytes
    signature: bytes
    registered_at: float


@dataclass(frozen=True)
class JobRecord:
    """A job and its figures (sizes, metrics); never an id, value or unmasked gradient."""

    job_id: str
    kind: str
    state: str
    parties: list[str]
    config: dict[str, Any]
    metrics: dict[str, Any]
    error: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ModelRecord:
    """A registered model: who holds its parts and how well it did; weights stay at the nodes."""

    model_id: str
    name: str
    version: int
    algorithm: str
    job_id: str
    parties: list[str]
    metrics: dict[str, Any]
    created_at: float


class JobExists(DataValidationError):
    """A job id is taken (by a job of any kind, or by a registered model's job)."""


class Store:
    """Thread-safe access to the coordinator's SQLite database (WAL mode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = open_store(path)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.executescript(SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # nodes ----------------------------------------------------------------------------------
    def upsert_node(self, node: NodeRecord) -> None:
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO nodes VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(party) DO UPDATE SET "
                "role=excluded.role, endpoint=excluded.endpoint, rows=excluded.rows, "
                "schema_json=excluded.schema_json, cert_pem=excluded.cert_pem, "
                "sealing_public_key=excluded.sealing_public_key, signature=excluded.signature, "
                "registered_at=excluded.registered_at",
                (node.party, node.role, node.endpoint, node.rows, json.dumps(node.schema),
                 node.cert_pem, node.sealing_public_key, node.signature, node.registered_at))

    def nodes(self, party: str | None = None) -> list[NodeRecord]:
        """Every registered node, or the one named `party`."""
        where, args = ("WHERE party=?", (party,)) if party is not None else ("", ())
        with self._lock:
            rows = self._conn.execute(f"SELECT * FROM nodes {where} ORDER BY party",  # noqa: S608
                                      args).fetchall()
        return [NodeRecord(party=r[0], role=r[1], endpoint=r[2], rows=r[3],
                           schema=json.loads(r[4]), cert_pem=r[5], sealing_public_key=r[6],
                           signature=r[7], registered_at=r[8]) for r in rows]

    def node(self, party: str) -> NodeRecord | None:
        found = self.nodes(party)
        return found[0] if found else None

    # jobs -----------------------------------------------------------------------------------
    def create_job(self, job_id: str, kind: str, parties: list[str],
                   config: dict[str, Any] | None = None) -> None:
        """Add a running job; an id already taken (by any job or model) is never replaced."""
        now = time.time()
        with self._tx() as cur:
            row = cur.execute("SELECT kind, state FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            if row is not None:
                article = "an" if row[0][:1] in tuple("aeiou") else "a"
                raise JobExists(f"job {job_id} exists ({article} {row[0]} job, {row[1]}); choose "
                                "another --job-id")
            model = cur.execute("SELECT model_id FROM models WHERE job_id=?",
                                (job_id,)).fetchone()
            if model is not None:
                raise JobExists(f"job id {job_id} trained model {model[0]}; choose another "
                                "--job-id")
            cur.execute("INSERT INTO jobs (job_id, kind, state, parties_json, config_json, "
                        "created_at, updated_at) VALUES (?,?,?,?,?,?,?)",
                        (job_id, kind, "running", json.dumps(parties),
                         json.dumps(config or {}), now, now))

    def delete_job(self, job_id: str) -> bool:
        """Remove a job's record (its model, if any, stays registered); False if none."""
        with self._tx() as cur:
            return cur.execute("DELETE FROM jobs WHERE job_id=?", (job_id,)).rowcount > 0

    def update_job(self, job_id: str, *, state: str | None = None,
                   metrics: dict[str, Any] | None = None, error: str | None = None) -> None:
        with self._tx() as cur:
            row = cur.execute("SELECT metrics_json FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            if row is None:
                raise KeyError(job_id)
            merged = json.loads(row[0])
            merged.update(metrics or {})
            cur.execute("UPDATE jobs SET state=COALESCE(?, state), metrics_json=?, "
                        "error=COALESCE(?, error), updated_at=? WHERE job_id=?",
                        (state, json.dumps(merged), error, time.time(), job_id))

    def jobs(self, job_id: str | None = None) -> list[JobRecord]:
        """Every job, or the one with `job_id`."""
        where, args = ("WHERE job_id=?", (job_id,)) if job_id is not None else ("", ())
        with self._lock:
            rows = self._conn.execute(
                "SELECT job_id, kind, state, parties_json, config_json, metrics_json, error, "
                f"created_at, updated_at FROM jobs {where} ORDER BY created_at",  # noqa: S608
                args).fetchall()
        return [JobRecord(job_id=r[0], kind=r[1], state=r[2], parties=json.loads(r[3]),
                          config=json.loads(r[4]), metrics=json.loads(r[5]), error=r[6],
                          created_at=r[7], updated_at=r[8]) for r in rows]

    def job(self, job_id: str) -> JobRecord | None:
        found = self.jobs(job_id)
        return found[0] if found else None

    # models ---------------------------------------------------------------------------------
    def register_model(self, name: str, algorithm: str, job_id: str, parties: list[str],
                       metrics: dict[str, Any]) -> ModelRecord:
        """Add the next version of `name` (one model per job: a re-run returns the same one)."""
        with self._tx() as cur:
            row = cur.execute("SELECT model_id FROM models WHERE job_id=?", (job_id,)).fetchone()
            if row is None:
                (latest,) = cur.execute("SELECT COALESCE(MAX(version), 0) FROM models "
                                        "WHERE name=?", (name,)).fetchone()
                version = int(latest) + 1
                model_id = f"{name}-v{version}"
                cur.execute("INSERT INTO models VALUES (?,?,?,?,?,?,?,?)",
                            (model_id, name, version, algorithm, job_id, json.dumps(parties),
                             json.dumps(metrics), time.time()))
        return next(m for m in self.models() if m.job_id == job_id)

    def model_of_job(self, job_id: str) -> ModelRecord | None:
        """The model a training job registered, if any."""
        return next((m for m in self.models() if m.job_id == job_id), None)

    def models(self) -> list[ModelRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT model_id, name, version, algorithm, job_id, "
                                      "parties_json, metrics_json, created_at FROM models "
                                      "ORDER BY name, version").fetchall()
        return [ModelRecord(model_id=r[0], name=r[1], version=r[2], algorithm=r[3], job_id=r[4],
                            parties=json.loads(r[5]), metrics=json.loads(r[6]), created_at=r[7])
                for r in rows]

    # audit anchors ----------------------------------------------------------------------------
    def add_anchor(self, anchor: Anchor) -> str | None:
        """Keep a party's signed audit head; the hash it had anchored before at that sequence
        when it differs (the party's log was rewritten), else None."""
        with self._tx() as cur:
            row = cur.execute("SELECT entry_hash FROM anchors WHERE party=? AND seq=?",
                              (anchor.party, anchor.seq)).fetchone()
            if row is not None:
                return None if row[0] == anchor.entry_hash else str(row[0])
            cur.execute("INSERT INTO anchors VALUES (?,?,?,?,?,?,?)",
                        (anchor.party, anchor.seq, anchor.entry_hash, anchor.time_unix,
                         anchor.signature, anchor.cert_pem, time.time()))
        return None

    def anchors(self, party: str) -> list[Anchor]:
        """A party's anchors, oldest entry first."""
        with self._lock:
            rows = self._conn.execute("SELECT party, seq, entry_hash, time_unix, signature, "
                                      "cert_pem FROM anchors WHERE party=? ORDER BY seq",
                                      (party,)).fetchall()
        return [Anchor(party=r[0], seq=r[1], entry_hash=r[2], time_unix=r[3], signature=r[4],
                       cert_pem=r[5]) for r in rows]

    # pseudonym evaluations --------------------------------------------------------------------
    def charge_evaluations(self, party: str, day: str, points: int, cap: int) -> int | None:
        """Count `points` evaluations for `party` on `day` if that stays within `cap`: None
        when counted, else the points already evaluated that day (nothing counted)."""
        with self._tx() as cur:
            row = cur.execute("SELECT points FROM pseudonym_evaluations WHERE party=? AND day=?",
                              (party, day)).fetchone()
            done = int(row[0]) if row else 0
            if done + points > cap:
                return done
            cur.execute("DELETE FROM pseudonym_evaluations WHERE day < ?", (day,))
            cur.execute("INSERT INTO pseudonym_evaluations VALUES (?,?,?) ON CONFLICT(party, day) "
                        "DO UPDATE SET points = points + excluded.points", (party, day, points))
        return None

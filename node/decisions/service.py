"""The bank's decision service: one long-lived scorer, request checks, a record of each decision.

Keys and the model's scoring set-up are made once, when the service starts (`BankScorer`); each
request then costs one joint scoring round. The pseudonyms of the enterprises the bank will score
again (its table's, its portfolio's) are made ahead in the background, at start and after a
change of the coordinator's key, so batches and scheduled reviews find them cached. A request's
bank-side values override or fill the bank's table row for that enterprise; an enterprise the
bank holds no row of must come with every model feature (null for a value the bank lacks).
Every decision is stored with what explains it, the admission strategy's verdict among it
(outcome, rules hit, the facts it read); each rule's hits are counted.
No HTTP here: node.decisions.api serves it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import threading
import time
import uuid
from typing import Any

import numpy as np

from common.uscc import explain_invalid_uscc
from node.config import NodeConfig
from node.decisions.admission import admit, dry_run, own_facts
from node.decisions.schema import (
    AdmissionOut,
    DecisionOut,
    DecisionRequest,
    FieldError,
    Inputs,
    ModelRef,
)
from node.decisions.store import DecisionStore
from node.decisions.strategy import Strategy
from node.policy import CreditPolicy
from node.portfolio.store import PortfolioStore, store_path
from node.scoring.bank import BankScorer
from node.scoring.bank_table import BankRows
from node.scoring.outcome import Decision
from node.scoring.warm import warm_in_background

log = logging.getLogger("fedcredit.decisions")


def policy_version(policy: CreditPolicy) -> str:
    """A policy's version: its stated one, if any, with a digest of everything in it."""
    digest = hashlib.sha256(policy.model_dump_json().encode()).hexdigest()[:12]
    return f"{policy.version}#{digest}" if policy.version else f"sha256:{digest}"


class DecisionService:
    """Decides on one enterprise per request with a scorer set up once; thread safe."""

    def __init__(self, config: NodeConfig, policy: CreditPolicy, *, model_id: str = "",
                 insecure: bool = False, warm: bool = True) -> None:
        """`warm`: make the pseudonyms of `known_ids` ahead, in the background, at start and
        after each change of the coordinator's key (`node.scoring.warm`)."""
        self.config = config
        self.policy = policy
        self.scorer = BankScorer(config, policy, model_id=model_id, insecure=insecure)
        self.store = DecisionStore(config.state_dir / "decisions" / "decisions.sqlite")
        self.policy_version = policy_version(policy)
        self.model = ModelRef(model_id=self.scorer.model_id, model_job=self.scorer.job,
                              algorithm=self.scorer.algorithm)
        self._stop = threading.Event()
        self.warmer = warm_in_background(self.scorer.source, self.known_ids, self._stop,
                                         lambda message, n: log.info(message, n)
                                         ) if warm else None

    def known_ids(self) -> list[str]:
        """The enterprises this bank will score again: its table's and its portfolio's."""
        ids = list(self.scorer.table.ids)
        path = store_path(self.config.state_dir)
        if path.exists():
            portfolio = PortfolioStore(path)
            try:
                ids += portfolio.enterprise_ids()
            finally:
                portfolio.close()
        return ids

    def close(self) -> None:
        self._stop.set()
        if self.warmer is not None:
            self.warmer.join(timeout=20)  # a round of the warm-up ends first
        self.scorer.close()
        self.store.close()

    def check(self, request: DecisionRequest, view: BankRows | None = None) -> None:
        """Refuse, naming the field, what the request model cannot know: the id's form, and
        feature names against this model (unknown, or missing for an enterprise we hold no row
        of); the consent's expiry."""
        ident = request.enterprise_id
        if self.config.data.id_format == "uscc":
            problem = explain_invalid_uscc(ident)
            if problem is not None:
                raise FieldError(("body", "enterprise_id"), f"not a USCC: {problem}")
        if request.consent.expires_at <= dt.datetime.now(dt.UTC):
            raise FieldError(("body", "consent", "expires_at"), "the consent has expired")
        if request.features is None:
            return
        allowed = self.scorer.input_features
        for name in request.features:
            if name not in allowed:
                raise FieldError(("body", "features", name),
                                 f"unknown feature; this model takes {', '.join(allowed)}")
        if ident not in (view or self.scorer.view).row_of:
            for name in self.scorer.part.features:
                if name not in request.features:
                    raise FieldError(("body", "features", name),
                                     "missing: the bank holds no row of this enterprise, so "
                                     "each model feature is needed (null for a missing value)")

    def decide(self, request: DecisionRequest) -> DecisionOut:
        """Check, score jointly, store and answer one decision."""
        started = time.perf_counter()
        created = dt.datetime.now(dt.UTC)
        view = self.scorer.view  # one snapshot of the bank's table for the whole decision
        self.check(request, view)
        ident = request.enterprise_id
        given = [request.features] if request.features is not None else None
        decision = self.scorer.score([ident], request.consent.reference, request.purpose,
                                     features=given,
                                     consent_expires=request.consent.expires_at.timestamp(),
                                     view=view)[0]
        result = _result(decision)
        admission, line = self._admission(decision, request, view)
        if admission is not None:
            result["credit_line"] = line
        out = DecisionOut(
            decision_id=uuid.uuid4().hex, enterprise_id=ident, **result, admission=admission,
            model=self.model, policy_version=self.policy_version, purpose=request.purpose,
            consent={"reference": request.consent.reference,
                     "expires_at": request.consent.expires_at.isoformat()},
            inputs=self._inputs(request, view), created_at=created,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 3))
        self.store.put(out.model_dump(mode="json"))
        return out

    def refusal_message(self) -> str:
        """Why the network refused one enterprise alone, naming the nodes and their caps."""
        nodes = ", ".join(peer.party for peer in self.scorer.feature_nodes)
        return (f"every feature node of the model ({nodes}) refused this enterprise: its daily "
                f"query budget for this bank is spent ([scoring] daily_budget, renewed at 00:00 "
                f"UTC) or it was scored with [scoring] max_model_versions other model versions "
                f"in [scoring] model_period_days (renewed as those days pass)")

    def _admission(self, decision: Decision, request: DecisionRequest, view: BankRows,
                   ) -> tuple[AdmissionOut | None, float | None]:
        """The strategy's verdict on a graded decision, and the line it grants."""
        if decision.outcome != "decided":
            return None, None
        given = [request.features] if request.features is not None else None
        own = own_facts(self.scorer, [request.enterprise_id], given, view)
        verdict = admit(self.policy, [decision], own)
        facts = {name: _number(values[0]) for name, values in own.items()}
        return AdmissionOut(outcome=verdict.outcome[0], segment=verdict.segment[0],
                            rules_hit=verdict.rules_hit[0],
                            strategy_version=self.policy.strategy.digest(),
                            policy_line=decision.credit_line, facts=facts), float(verdict.line[0])

    def dry_run(self, strategy: Strategy, since: str = "") -> dict[str, Any]:
        """What `strategy` would change over the decisions stored since `since`."""
        return dry_run(self.policy, strategy, self.store.records(since))

    def get(self, decision_id: str) -> DecisionOut | None:
        found = self.store.get(decision_id)
        return None if found is None else DecisionOut.model_validate(found)

    def _inputs(self, request: DecisionRequest, view: BankRows) -> Inputs:
        """The bank-side values the model used for this enterprise and where each came from."""
        names = self.scorer.part.features
        given = [request.features] if request.features is not None else None
        rows, present, _ = self.scorer.own_inputs([request.enterprise_id], given, view)
        in_table = request.enterprise_id in view.row_of
        request_names = set(request.features or {})
        values = {n: _number(rows[0, j]) if present[0] else None for j, n in enumerate(names)}
        sources = {n: "request" if n in request_names else "table" if in_table else "none"
                   for n in names}
        return Inputs(features=values, sources=sources)  # type: ignore[arg-type]


def _number(value: Any) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


def _result(d: Decision) -> dict[str, Any]:
    pd = None if np.isnan(d.probability) or d.outcome == "refused" else d.probability
    return {"outcome": d.outcome, "pd": pd, "score": d.score, "grade": d.grade,
            "credit_line": d.credit_line, "reason_codes": list(d.reasons), "reason": d.reason,
            "parties_covering": d.parties_covering, "snapshots": dict(d.snapshots)}

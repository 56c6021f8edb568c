"""Run a SecureBoost job: the coordinator relays sealed histograms and partitions, tree by tree."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from pydantic import field_validator

from common.parts import Payload
from coordinator.nodes import NodeClient
from coordinator.steps import JobDriver, TrainingJobConfig
from models.sbt import SbtConfig

log = logging.getLogger(__name__)


class SbtJobConfig(TrainingJobConfig):
    """A boosted-trees job as the operator declares it (`fedcredit train sbt --config FILE`)."""

    step_deadline_seconds: float = 600.0
    sbt: dict[str, Any] = {}

    @field_validator("sbt")
    @classmethod
    def _valid_hyper_parameters(cls, value: dict[str, Any]) -> dict[str, Any]:
        raw = dict(value)
        if raw.get("goss") is not None:
            raw["goss"] = tuple(raw["goss"])
        SbtConfig(**raw)  # raises with the reason
        return value

    @property
    def trees(self) -> int:
        return int(self.sbt.get("trees", SbtConfig().trees))

    @property
    def depth(self) -> int:
        return int(self.sbt.get("depth", SbtConfig().depth))


class SbtJob(JobDriver):
    """One run of a boosting job. The coordinator holds no key: it only relays sealed bytes."""

    algorithm = "sbt"

    def __init__(self, job_id: str, config: SbtJobConfig, label: NodeClient,
                 features: list[NodeClient], *, on_epoch: Any = None) -> None:
        super().__init__(job_id, label, features, deadline_s=config.step_deadline_seconds,
                         attempts=config.step_attempts)
        self.config = config
        self.on_epoch = on_epoch
        self.by_name = {f.party: f for f in features}

    def open(self) -> None:
        settings = {"label": self.label.party, "features": [f.party for f in self.features],
                    "align_job": self.config.align_job, "sbt": self.config.sbt}
        self._call(self.label, self._header("open", extra=settings,
                                            peers=[f.peer_key for f in self.features]))
        self._each([(f, self._header("open", extra=settings, peers=[self.label.peer_key]), [])
                    for f in self.features])
        keys = self._call(self.label, self._header("keys"))
        self._each([(f, self._header("keys"), [keys[f"public_context:{f.party}"]])
                    for f in self.features])

    def level(self, tree: int, level: int) -> None:
        requests = self._call(self.label, self._header("histograms", tree, level))
        answers: list[Payload] = []
        if requests:
            replies = self._each([(f, self._header("histograms", tree, level),
                                   [requests[f"histogram_request:{f.party}"]])
                                  for f in self.features])
            answers = [p for r in replies for p in r.values()]
        splits = self._call(self.label, self._header("find_splits", tree, level), answers)
        asked = [(self.by_name[name.split(":", 1)[1]], payload)
                 for name, payload in splits.items()]
        replies = self._each([(f, self._header("split", tree, level), [p]) for f, p in asked])
        self._call(self.label, self._header("apply_splits", tree, level),
                   [p for r in replies for p in r.values()])

    def end_tree(self, tree: int) -> dict[str, Any]:
        reply = self._call(self.label, self._header("end_tree", tree))
        report: dict[str, Any] = json.loads(reply.pop("report").data)
        self._each([(f, self._header("end_tree", tree), [reply[f"topology:{f.party}"]])
                    for f in self.features])
        return report

    def run(self) -> list[dict[str, Any]]:
        try:
            self.open()
            reports = []
            for tree in range(self.config.trees):
                started = time.perf_counter()
                for level in range(self.config.depth):
                    self.level(tree, level)
                report = self.end_tree(tree)
                report["seconds"] = round(time.perf_counter() - started, 3)
                reports.append(report)
                if self.on_epoch is not None:
                    self.on_epoch(report)
                log.info("job %s tree %d: loss %.5f auc %.4f", self.job_id, tree,
                         report["loss"], report["auc"])
            self._each([(c, self._header("finish"), []) for c in [self.label, *self.features]])
            return reports
        finally:
            self.close()

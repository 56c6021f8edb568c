"""Run a vertical logistic-regression job as arbiter: drive every step, relay sealed payloads."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from typing import Any

from pydantic import field_validator

from common.errors import ProtocolError
from common.parts import Payload
from coordinator.nodes import NodeClient
from coordinator.steps import JobDriver, TrainingJobConfig
from models.vlr import StepKey, VlrConfig
from models.vlr.arbiter import Arbiter

log = logging.getLogger(__name__)


class VlrJobConfig(TrainingJobConfig):
    """A training job as the operator declares it (`fedcredit train vlr --config job.toml`)."""

    vlr: dict[str, Any] = {}

    @field_validator("vlr")
    @classmethod
    def _valid_hyper_parameters(cls, value: dict[str, Any]) -> dict[str, Any]:
        VlrConfig(**value)  # raises with the reason
        return value

    def hyper_parameters(self) -> VlrConfig:
        return VlrConfig(**self.vlr)


class VlrJob(JobDriver):
    """One run (or resumed run) of a job; the coordinator holds the arbiter's secret key only."""

    algorithm = "vlr"

    def __init__(self, job_id: str, config: VlrJobConfig, label: NodeClient,
                 features: list[NodeClient], *, on_epoch: Any = None) -> None:
        super().__init__(job_id, label, features, deadline_s=config.step_deadline_seconds,
                         attempts=config.step_attempts)
        self.config = config
        self.on_epoch = on_epoch
        self.arbiter = Arbiter(job_id)  # a fresh key pair per run; weights live at the parties

    def open(self, resume: bool) -> tuple[int, int]:
        """Hand out the public context; returns (next epoch, batches per epoch)."""
        context = Payload(name="arbiter_context", data=self.arbiter.public_context())
        settings = {"label": self.label.party, "features": [f.party for f in self.features],
                    "align_job": self.config.align_job, "vlr": self.config.vlr,
                    "resume": resume}
        opened = self._call(self.label, self._header(
            "open", extra=settings, peers=[f.peer_key for f in self.features]), [context])
        next_epoch = int(opened.pop("next_epoch").data)
        n_batches = int(opened.pop("n_batches").data)
        replies = self._each([
            (f, self._header("open", extra=settings, peers=[self.label.peer_key]),
             [context, opened[f"plan:{f.party}"], opened[f"validation_context:{f.party}"]])
            for f in self.features])
        for f, reply in zip(self.features, replies, strict=True):
            if int(reply["next_epoch"].data) != next_epoch:
                raise ProtocolError(f"{f.party} resumes at epoch {reply['next_epoch'].data!r}, "
                                    f"{self.label.party} at {next_epoch}: checkpoints differ")
        return next_epoch, n_batches

    def run_batch(self, epoch: int, batch: int) -> None:
        positions = self._call(self.label, self._header("positions", epoch, batch))
        forwards = self._each([
            (f, self._header("forward", epoch, batch), [positions[f"positions:{f.party}"]])
            for f in self.features])
        residual = self._call(self.label, self._header("residual", epoch, batch),
                              [p for reply in forwards for p in reply.values()])
        parties = [(self.label, []), *[(f, [residual[f"residual:{f.party}"]])
                                       for f in self.features]]
        gradients = self._each([(c, self._header("gradient", epoch, batch), p)
                                for c, p in parties])
        key = StepKey(self.job_id, epoch, batch, "gradient")
        answers = [self.arbiter.decrypt_gradient(key, c.party, g["gradient"].data)
                   for (c, _), g in zip(parties, gradients, strict=True)]
        self._each([(c, self._header("update", epoch, batch),
                     [Payload(name="decrypted", data=a)])
                    for (c, _), a in zip(parties, answers, strict=True)])

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        parts = self._each([(f, self._header("validate", epoch), []) for f in self.features])
        reply = self._call(self.label, self._header("end_epoch", epoch),
                           [p for r in parts for p in r.values()])
        report: dict[str, Any] = json.loads(reply["report"].data)
        self._each([(f, self._header("end_epoch", epoch, extra={"improved": report["improved"]}),
                     []) for f in self.features])
        return report

    def finish(self) -> None:
        self._each([(c, self._header("finish"), []) for c in [self.label, *self.features]])

    def run(self, resume: bool = False) -> list[dict[str, Any]]:
        try:
            epoch, n_batches = self.open(resume)
            reports: list[dict[str, Any]] = []
            while True:
                started = time.perf_counter()
                for batch in range(n_batches):
                    self.run_batch(epoch, batch)
                report = self.end_epoch(epoch)
                report["seconds"] = round(time.perf_counter() - started, 3)
                reports.append(report)
                if self.on_epoch is not None:
                    self.on_epoch(report)
                log.info("job %s epoch %d: loss %.5f auc %.4f", self.job_id, epoch,
                         report["loss"], report["auc"])
                if report["stop"]:
                    break
                epoch += 1
            self.finish()
            return reports
        finally:
            self.close()


def hyper_parameters_dict(config: VlrConfig) -> dict[str, Any]:
    return asdict(config)

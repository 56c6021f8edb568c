"""Label-private vertical logistic regression, declared once: its steps, roles and driver.

Set-up:  A.public_context() → L.open → plan, L's own public context (sealed to each F) → F.open
Batch:   L.positions → F.forward [u_F/4] → L.residual [d] → L|F.gradient (masked step) →
         A.refresh → L|F.update (each party's encrypted weights step; nobody sees them)
Epoch:   F.validate [u_F] → L.loss [u + r] → A.refresh → L.loss_sum [Σ u² - 4zu + r'] →
         A.reencrypt (under L's own key) → L.end_epoch (one loss scalar) → F.end_epoch
End:     L|F.reveal [w_best + r] (F told the best epoch only now) → A.reencrypt (under each
         party's own key) → L|F.finish (own weights; F sends its final validation logits under
         L's key) → L.metrics (AUC, KS once)
A (the arbiter) is the driver itself: it runs at the coordinator and holds the training key.

Where this departs from DESIGN §4.2, and why:
* A never decodes a masked value to floating point (a 2^40-times larger mask leaves a float64
  value 13 bits): it decrypts to exact integers and re-encrypts (`crypto.he.lr_arbiter`). So the
  masked loss scalar is not "decrypted by A" but re-encrypted under L's own key; L removes its
  mask inside its ciphertext. A learns less than §4.2 allows, L the same.
* Early stopping uses the second-order Taylor loss (the one computable under encryption); the
  exact log loss, AUC and KS are computed once, for the final model.
* A resumed job needs the key its weights are encrypted under: the coordinator keeps the job's
  secret key in a private file of its state directory (`coordinator/vault.py`) until the job
  ends, and deletes it then.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from typing import Any

from common.errors import ProtocolError
from common.payload import Payload
from models.protocol import (
    Algorithm,
    Call,
    Floors,
    Network,
    Output,
    Progress,
    Send,
    Step,
    StepKey,
    To,
    check_floor,
    merged,
    two_roles,
)
from models.vlr import VlrConfig
from models.vlr.arbiter import Arbiter
from models.vlr.feature import FeatureParty
from models.vlr.label import LabelParty
from models.vlr.scoring import VLR_SCORING, PartyModel

# --- roles --------------------------------------------------------------------------------------


def apply_floors(settings: VlrConfig, floors: Floors) -> VlrConfig:
    """A job below any of this node's floors is refused, naming the setting and both values."""
    check_floor("[vlr] batch_size", settings.batch_size, floors.min_batch, "min_batch")
    check_floor("[vlr] min_batch", settings.min_batch, floors.min_batch, "min_batch")
    check_floor("[vlr] mask_bits", settings.mask_bits, floors.min_mask_bits, "min_mask_bits")
    check_floor("[vlr] min_rows_per_column", settings.min_rows_per_column,
                floors.min_rows_per_column, "min_rows_per_column")
    check_floor("[vlr] validation_fraction", settings.validation_fraction,
                floors.min_validation_fraction, "min_validation_fraction")
    return settings


# --- label node steps ---------------------------------------------------------------------------


def _label_open(role: LabelParty, call: Call) -> Mapping[str, Output]:
    role.open(call.part("arbiter_context"))
    return {"plan": role.plan(), "validation_context": role.validation_context(),
            "n_batches": str(role.n_batches).encode(),
            "next_epoch": str(role.next_epoch).encode()}


def _label_positions(role: LabelParty, call: Call) -> Mapping[str, Output]:
    return {"positions": role.batch_positions(call.key)}


def _label_residual(role: LabelParty, call: Call) -> Mapping[str, Output]:
    residual = role.residual(call.key, call.each("forward"))
    call.memo["residual"] = residual  # L's own gradient step uses it too
    return {"residual": residual}


def _label_gradient(role: LabelParty, call: Call) -> Mapping[str, Output]:
    residual = call.memo.get("residual")
    if residual is None:
        raise ProtocolError("gradient step without a residual")
    return {"gradient": role.gradient(call.key, residual)}


def _label_loss(role: LabelParty, call: Call) -> Mapping[str, Output]:
    return {"logits": role.loss_request(call.key.epoch, call.each("validation"))}


def _label_loss_sum(role: LabelParty, call: Call) -> Mapping[str, Output]:
    return {"loss_request": role.loss_sum(call.part("refreshed"))}


def _label_end_epoch(role: LabelParty, call: Call) -> Mapping[str, Output]:
    report = role.end_epoch(call.key.epoch, call.part("loss"))
    return {"report": json.dumps(asdict(report)).encode()}


def _label_metrics(role: LabelParty, call: Call) -> Mapping[str, Output]:
    report = role.metrics(call.each("final_validation"))
    return {"report": json.dumps(asdict(report)).encode()}


# --- feature node steps -------------------------------------------------------------------------


def _feature_open(role: FeatureParty, call: Call) -> Mapping[str, Output]:
    role.open(call.part("arbiter_context"), call.part("validation_context"), call.part("plan"))
    return {"next_epoch": str(role.next_epoch).encode(), "width": str(role.n_features).encode()}


def _label_check(role: LabelParty, call: Call) -> Mapping[str, Output]:
    role.check_widths({party: int(data) for party, data in call.each("width").items()})
    return {}


def _feature_forward(role: FeatureParty, call: Call) -> Mapping[str, Output]:
    return {"forward": role.forward(call.key, call.part("positions"))}


def _feature_gradient(role: FeatureParty, call: Call) -> Mapping[str, Output]:
    return {"gradient": role.gradient(call.key, call.part("residual"))}


def _feature_validate(role: FeatureParty, call: Call) -> Mapping[str, Output]:
    return {"validation": role.validation_logits(call.key)}


def _feature_end_epoch(role: FeatureParty, call: Call) -> Mapping[str, Output]:
    role.end_epoch(call.key.epoch)
    return {}


# --- both ---------------------------------------------------------------------------------------


def _update(role: LabelParty | FeatureParty, call: Call) -> Mapping[str, Output]:
    role.update(call.key, call.part("decrypted"))
    return {}


def _reveal(role: LabelParty | FeatureParty, call: Call) -> Mapping[str, Output]:
    best = role.best_epoch if isinstance(role, LabelParty) else int(call.extra["best_epoch"])
    return {"reveal": role.reveal_request(best)}


def _finish(role: LabelParty | FeatureParty, call: Call) -> Mapping[str, Output]:
    """Read this party's final weights (under its own key); its part of the model stays here."""
    role.finish(call.part("revealed"))
    if role.scaler is None:
        raise ProtocolError(f"job {call.key.job} finished before it was opened")
    model = PartyModel(party=call.me, role="label" if isinstance(role, LabelParty) else "feature",
                       job=call.key.job, features=call.columns, weights=role.weights,
                       mean=role.scaler.mean, scale=role.scaler.scale)
    out: dict[str, Output] = {"model": model.to_json().encode()}
    if isinstance(role, FeatureParty):
        out["final_validation"] = role.final_logits()
    return out


STEPS = (
    Step("open", "label", _label_open, takes=("arbiter_context",), opens=True,
         sends=(Send("plan", To.FEATURES), Send("validation_context", To.FEATURES),
                Send("n_batches", To.DRIVER), Send("next_epoch", To.DRIVER))),
    Step("open", "feature", _feature_open, opens=True,
         takes=("arbiter_context", "plan", "validation_context"),
         sends=(Send("next_epoch", To.DRIVER), Send("width", To.LABEL))),
    Step("check", "label", _label_check, takes=("width",), per_batch=False),
    Step("positions", "label", _label_positions, sends=(Send("positions", To.FEATURES),)),
    Step("forward", "feature", _feature_forward, takes=("positions",),
         sends=(Send("forward", To.LABEL),)),
    Step("residual", "label", _label_residual, takes=("forward",),
         sends=(Send("residual", To.FEATURES),)),
    Step("gradient", "label", _label_gradient, sends=(Send("gradient", To.DRIVER),)),
    Step("gradient", "feature", _feature_gradient, takes=("residual",),
         sends=(Send("gradient", To.DRIVER),)),
    Step("update", "label", _update, takes=("decrypted",)),
    Step("update", "feature", _update, takes=("decrypted",)),
    Step("validate", "feature", _feature_validate, per_batch=False,
         sends=(Send("validation", To.LABEL),)),
    Step("loss", "label", _label_loss, takes=("validation",), per_batch=False,
         sends=(Send("logits", To.DRIVER),)),
    Step("loss_sum", "label", _label_loss_sum, takes=("refreshed",), per_batch=False,
         sends=(Send("loss_request", To.DRIVER),)),
    Step("end_epoch", "label", _label_end_epoch, takes=("loss",), per_batch=False,
         checkpoint=True, sends=(Send("report", To.DRIVER),)),
    Step("end_epoch", "feature", _feature_end_epoch, per_batch=False, checkpoint=True),
    Step("reveal", "label", _reveal, per_batch=False, sends=(Send("reveal", To.DRIVER),)),
    Step("reveal", "feature", _reveal, per_batch=False, sends=(Send("reveal", To.DRIVER),)),
    Step("finish", "label", _finish, takes=("revealed",), per_batch=False,
         sends=(Send("model", To.STORE),)),
    Step("finish", "feature", _finish, takes=("revealed",), per_batch=False,
         sends=(Send("model", To.STORE), Send("final_validation", To.LABEL))),
    Step("metrics", "label", _label_metrics, takes=("final_validation",), per_batch=False,
         sends=(Send("report", To.DRIVER),)),
)


# --- the driver (the arbiter's side) ------------------------------------------------------------

ARBITER_KEY = "vlr-arbiter-key"


def _arbiter(net: Network, settings: VlrConfig, resume: bool) -> Arbiter:
    """A fresh key pair, or on resume the one the parties' weights are encrypted under."""
    kept = net.vault.get(ARBITER_KEY) if resume else None
    if resume and kept is None:
        raise ProtocolError(f"job {net.job_id} cannot resume: the coordinator no longer holds "
                            "the arbiter key its weights are encrypted under")
    arbiter = Arbiter(net.job_id, settings.params, secret=kept)
    if kept is None:
        net.vault[ARBITER_KEY] = arbiter.secret_bytes()
    return arbiter


def _one(reply: Mapping[str, Mapping[str, Payload]], party: str, name: str) -> bytes:
    return reply[party][name].data


def drive(net: Network, settings: VlrConfig, *, resume: bool = False,
          arbiter: Arbiter | None = None) -> Iterator[Progress]:
    """Run the job to its end; yields after set-up, after every epoch, and the final metrics."""
    arbiter = arbiter or _arbiter(net, settings, resume)
    context = Payload("arbiter_context", arbiter.public_context())
    opened = net.run("open", parts=[context], extra={"resume": resume}, at=[net.label])
    own = opened[net.label]
    next_epoch = int(own.pop("next_epoch").data)
    n_batches = int(own.pop("n_batches").data)
    replies = net.run("open", parts=[context, *own.values()], extra={"resume": resume},
                      at=net.features)
    for party, reply in replies.items():
        if int(reply.pop("next_epoch").data) != next_epoch:
            raise ProtocolError(f"{party} resumes at an epoch other than {net.label}'s "
                                f"{next_epoch}: checkpoints differ")
    net.run("check", parts=merged(replies))
    yield Progress("setup", {"next_epoch": next_epoch, "n_batches": n_batches})
    epoch, label = next_epoch, net.label
    while True:
        for batch in range(n_batches):
            positions = merged(net.run("positions", epoch, batch))
            forwards = merged(net.run("forward", epoch, batch, positions))
            residual = merged(net.run("residual", epoch, batch, forwards))
            gradients = net.run("gradient", epoch, batch, residual)  # every party at once
            key = StepKey(net.job_id, epoch, batch, "gradient")
            net.run("update", epoch, batch, [
                Payload("decrypted", arbiter.refresh_step(key, party, reply["gradient"].data),
                        recipient=party)
                for party, reply in gradients.items()])
        validation = merged(net.run("validate", epoch))
        logits = _one(net.run("loss", epoch, parts=validation), label, "logits")
        refreshed = arbiter.refresh_logits(StepKey(net.job_id, epoch, -1, "loss"), label, logits)
        request = _one(net.run("loss_sum", epoch, parts=[Payload("refreshed", refreshed)]),
                       label, "loss_request")
        loss = arbiter.reencrypt(StepKey(net.job_id, epoch, -1, "loss_sum"), label, request)
        report: dict[str, Any] = json.loads(_one(
            net.run("end_epoch", epoch, parts=[Payload("loss", loss)], at=[label]),
            label, "report"))
        net.run("end_epoch", epoch, at=net.features)
        yield Progress("epoch", report)
        if report["stop"]:
            break
        epoch += 1
    reveals = net.run("reveal", epoch, extra={"best_epoch": report["best_epoch"]})
    finals = net.run("finish", epoch, parts=[
        Payload("revealed", arbiter.reencrypt(StepKey(net.job_id, epoch, -1, "reveal"), party,
                                              reply["reveal"].data), recipient=party)
        for party, reply in reveals.items()])
    metrics = json.loads(_one(net.run("metrics", epoch, parts=merged(finals)), label, "report"))
    net.vault.pop(ARBITER_KEY, None)  # no ciphertext under it is needed any more
    yield Progress("final", {**report, "auc": metrics["auc"], "ks": metrics["ks"],
                             "log_loss": metrics["loss"], "final": True})


def best_epoch(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The final model's figures (the last report carries them) or the lowest-loss epoch."""
    finals = [h for h in history if h.get("final")]
    if finals:
        return finals[-1]
    return min(history, key=lambda h: h["loss"]) if history else {}


ALGORITHM = Algorithm(
    name="vlr",
    summary="Label-private vertical logistic regression across the bank and every feature node "
            "(CKKS, encrypted weights).",
    purpose="vertical-lr training", settings=VlrConfig, steps=STEPS,
    make_role=two_roles(LabelParty, FeatureParty),
    apply_floors=apply_floors, drive=drive, scoring=VLR_SCORING,
    length_setting="max_epochs", unit="epoch", best=best_epoch)

"""SecureBoost, declared once: its steps, the roles that run them, and its driver.

Set-up:   L.keys (fresh BFV keys every run; public context sealed to each F) → F.keys; both
          tell the driver their next tree (a resumed job continues from its checkpoints).
Tree k, level d (StepKey epoch = k, batch = d):
          L.histograms (node-masked encrypted gradients over all rows, row counts; never
          positions) → F.histograms (refuses nodes below its floor) → L.find_splits (encrypted
          node indicators for F's winning splits) → F.split → L.apply_splits
End:      L.end_tree (topologies to each F, report to the driver) → F.end_tree; both checkpoint
          after it; then `finish`. The coordinator holds no key: it only relays sealed bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from typing import Any

from common.errors import ProtocolError
from models.protocol import (
    Algorithm,
    Call,
    Floors,
    Network,
    Output,
    Progress,
    Send,
    Step,
    To,
    check_floor,
    merged,
    two_roles,
)
from models.sbt import SbtConfig
from models.sbt.codec import feature_model_bytes, label_model_bytes
from models.sbt.feature import FeatureParty
from models.sbt.label import LabelParty
from models.sbt.scoring import SBT_SCORING


def _opened(role: object, call: Call) -> Mapping[str, Output]:
    return {}


def apply_floors(settings: SbtConfig, floors: Floors) -> SbtConfig:
    """A job asking F for histograms of smaller nodes than this node's floor is refused."""
    check_floor("[sbt] min_histogram_rows", settings.min_histogram_rows,
                floors.min_histogram_rows, "min_histogram_rows")
    return settings


# --- label node ---------------------------------------------------------------------------------


def _label_keys(role: LabelParty, call: Call) -> Mapping[str, Output]:
    return {"public_context": role.open(), "next_tree": str(role.next_epoch).encode()}


def _label_histograms(role: LabelParty, call: Call) -> Mapping[str, Output]:
    request = role.histogram_request(call.key)
    return {} if request is None else {"histogram_request": request}


def _label_find_splits(role: LabelParty, call: Call) -> Mapping[str, Output]:
    return {"split_request": role.find_splits(call.key, call.each("histograms"))}


def _label_apply_splits(role: LabelParty, call: Call) -> Mapping[str, Output]:
    role.apply_splits(call.key, call.each("partitions"))
    return {}


def _label_end_tree(role: LabelParty, call: Call) -> Mapping[str, Output]:
    topologies = role.end_tree(call.key.epoch)
    return {"topology": topologies, "report": json.dumps(asdict(role.reports[-1])).encode()}


def _label_finish(role: LabelParty, call: Call) -> Mapping[str, Output]:
    return {"model": label_model_bytes(role.base_margin, role.trees, role.feature_parties,
                                       [asdict(r) for r in role.reports], columns=call.columns)}


# --- feature node -------------------------------------------------------------------------------


def _feature_keys(role: FeatureParty, call: Call) -> Mapping[str, Output]:
    role.open(call.part("public_context"))
    return {"next_tree": str(role.next_epoch).encode()}


def _feature_histograms(role: FeatureParty, call: Call) -> Mapping[str, Output]:
    return {"histograms": role.histograms(call.key, call.part("histogram_request"))}


def _feature_split(role: FeatureParty, call: Call) -> Mapping[str, Output]:
    return {"partitions": role.split(call.key, call.part("split_request"))}


def _feature_end_tree(role: FeatureParty, call: Call) -> Mapping[str, Output]:
    role.end_tree(call.key.epoch, call.part("topology"))
    return {}


def _feature_finish(role: FeatureParty, call: Call) -> Mapping[str, Output]:
    """The lookup table and topologies stay at this node; never the keys."""
    return {"model": feature_model_bytes(
        call.me, role.records(), [role.topology(t) for t in range(role.trees_done)],
        columns=call.columns)}


STEPS = (
    Step("open", "label", _opened, opens=True),
    Step("open", "feature", _opened, opens=True),
    Step("keys", "label", _label_keys,
         sends=(Send("public_context", To.FEATURES), Send("next_tree", To.DRIVER))),
    Step("keys", "feature", _feature_keys, takes=("public_context",),
         sends=(Send("next_tree", To.DRIVER),)),
    Step("histograms", "label", _label_histograms,
         sends=(Send("histogram_request", To.FEATURES),)),
    Step("histograms", "feature", _feature_histograms, takes=("histogram_request",),
         sends=(Send("histograms", To.LABEL),)),
    Step("find_splits", "label", _label_find_splits, takes=("histograms",),
         sends=(Send("split_request", To.FEATURES),)),
    Step("split", "feature", _feature_split, takes=("split_request",),
         sends=(Send("partitions", To.LABEL),)),
    Step("apply_splits", "label", _label_apply_splits, takes=("partitions",)),
    Step("end_tree", "label", _label_end_tree, per_batch=False, checkpoint=True,
         sends=(Send("topology", To.FEATURES), Send("report", To.DRIVER))),
    Step("end_tree", "feature", _feature_end_tree, takes=("topology",), per_batch=False,
         checkpoint=True),
    Step("finish", "label", _label_finish, per_batch=False, sends=(Send("model", To.STORE),)),
    Step("finish", "feature", _feature_finish, per_batch=False,
         sends=(Send("model", To.STORE),)),
)


def drive(net: Network, settings: SbtConfig, *, resume: bool = False) -> Iterator[Progress]:
    """Build `settings.trees` trees level by level from the label node's next tree; yields after
    set-up and after every tree."""
    net.run("open", extra={"resume": resume}, at=[net.label])
    net.run("open", extra={"resume": resume}, at=net.features)
    own = net.run("keys", at=[net.label])[net.label]
    next_tree = int(own.pop("next_tree").data)
    replies = net.run("keys", parts=list(own.values()), at=net.features)
    behind = [p for p, r in replies.items() if int(r["next_tree"].data) == next_tree - 1]
    if behind:  # stopped between L's end_tree and theirs: L repeats that tree's topologies
        ended = merged(net.run("end_tree", next_tree - 1, at=[net.label]))
        net.run("end_tree", next_tree - 1, parts=[p for p in ended if p.name != "report"],
                at=behind)
        replies = {p: r for p, r in replies.items() if p not in behind}
    for party, reply in replies.items():
        if int(reply["next_tree"].data) != next_tree:
            raise ProtocolError(f"{party} resumes at tree {reply['next_tree'].data!r}, "
                                f"{net.label} at {next_tree}: checkpoints differ")
    yield Progress("setup", {"next_epoch": next_tree})
    for tree in range(next_tree, settings.trees):
        for level in range(settings.depth):
            requests = merged(net.run("histograms", tree, level, at=[net.label]))
            answers = merged(net.run("histograms", tree, level, requests, at=net.features)
                             ) if requests else []
            splits = merged(net.run("find_splits", tree, level, answers))
            asked = [p.recipient for p in splits]
            partitions = merged(net.run("split", tree, level, splits, at=asked)) if asked else []
            net.run("apply_splits", tree, level, partitions)
        ended = merged(net.run("end_tree", tree, at=[net.label]))
        report = next(p for p in ended if p.name == "report")
        net.run("end_tree", tree, parts=[p for p in ended if p.name != "report"], at=net.features)
        yield Progress("epoch", {**json.loads(report.data), "epoch": tree})
    net.run("finish")


def last_tree(history: list[dict[str, Any]]) -> dict[str, Any]:
    return history[-1] if history else {}


ALGORITHM = Algorithm(
    name="sbt",
    summary="Vertical gradient-boosted trees (SecureBoost) with encrypted histograms.",
    purpose="secureboost training", settings=SbtConfig, steps=STEPS,
    make_role=two_roles(LabelParty, FeatureParty),
    apply_floors=apply_floors, drive=drive, scoring=SBT_SCORING,
    length_setting="trees", unit="tree", best=last_tree, resumable=True,
    step_deadline_seconds=600.0)

"""Federated WOE/IV binning, declared once: its steps, the roles that run them, and its driver.

  L.labels  fresh BFV keys; public context and [y] -> every F
  F.prebins own bins (floor merges audited), row counts and [events] per slot -> L
  L.merge   decrypt, optimal merges (optbinning on counts), WOE/IV -> merges, WOE, [L's WOE
            columns] -> every F
  F.finish  applies merges, stores its bins/WOE table; correlations (pairs, masked sums; the
            within-F matrix for VIF) -> L; [own WOE columns] -> every F sorting after it
  F.cross   (two or more feature nodes, correlations asked) masked sums of the earlier nodes'
            [WOE columns] per own bin -> L
Feature nodes get each other's sealing keys at open only when correlations are asked
(`peers_when`): a job without them never seals a part from one feature node to another.
  L.select  IV, correlation and VIF selection; stores the IV table; reports it to the driver
See `models/binning/__init__.py` for what each party learns. The coordinator only relays sealed
bytes and receives the IV table (no per-bin figures).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from common.errors import ProtocolError
from models.binning import BinningConfig
from models.binning.feature import FeatureParty
from models.binning.label import LabelParty
from models.protocol import (
    Algorithm,
    BelowFloor,
    Call,
    Floors,
    Network,
    Output,
    Progress,
    RoleSetup,
    Send,
    Step,
    To,
    check_floor,
    merged,
)


class CorrelationsRefused(BelowFloor):
    """A job asks for VIF; this node does not share its columns' correlation matrix."""

    def __init__(self) -> None:
        ProtocolError.__init__(self, "[binning] max_vif needs this node's correlation matrix of "
                               "its WOE columns, which it does not share ([floors] "
                               "share_correlations = false in its config); leave max_vif out")
        self.setting, self.floor_name = "[binning] max_vif", "share_correlations"
        self.asked, self.floor = 1.0, 0.0  # BelowFloor's fields: asked for it, shares none

    def audit_details(self) -> dict[str, Any]:
        return {"setting": self.setting, "floor_name": self.floor_name, "shared": False}


def apply_floors(settings: BinningConfig, floors: Floors) -> BinningConfig:
    """A job asking for bins smaller than this node's floor is refused (and audited), and so is
    a job asking for VIF at a node that does not share its correlation matrix."""
    check_floor("[binning] min_bin_rows", settings.min_bin_rows, floors.min_bin_rows,
                "min_bin_rows")
    if settings.max_vif is not None and not floors.share_correlations:
        raise CorrelationsRefused()
    return settings


def make_role(setup: RoleSetup, settings: BinningConfig) -> LabelParty | FeatureParty:
    if setup.role == "label":
        if setup.y is None:
            raise ProtocolError("a label node needs labels")
        return LabelParty(setup.job, setup.X, setup.y, setup.features, settings,
                          columns=setup.columns, party=setup.party)
    return FeatureParty(setup.party, setup.job, setup.X, setup.alignment, settings,
                        columns=setup.columns)


def _opened(role: object, call: Call) -> Mapping[str, Output]:
    return {}


def _label_labels(role: LabelParty, call: Call) -> Mapping[str, Output]:
    context, labels = role.open()
    return {"public_context": context, "labels": labels}


def _feature_prebins(role: FeatureParty, call: Call) -> Mapping[str, Output]:
    return {"prebins": role.prebins(call.part("public_context"), call.part("labels"))}


def _label_merge(role: LabelParty, call: Call) -> Mapping[str, Output]:
    return {"bins": role.merge(call.each("prebins"))}


def _feature_finish(role: FeatureParty, call: Call) -> Mapping[str, Output]:
    answer, model = role.finish(call.part("bins"))
    later = [f for f in sorted(call.features) if f > call.me]
    out: dict[str, Output] = {"correlation": answer, "model": model}
    columns = role.peer_columns(later)
    if columns:  # only with correlations asked and a feature node after this one
        out["columns"] = columns
    return out


def _feature_cross(role: FeatureParty, call: Call) -> Mapping[str, Output]:
    return {"cross": role.cross(call.peers("columns"))}


def _label_select(role: LabelParty, call: Call) -> Mapping[str, Output]:
    report = role.select(call.each("correlation"), call.each("cross"))
    return {"report": json.dumps(report).encode(), "model": role.summary_bytes()}


STEPS = (
    Step("open", "label", _opened, opens=True),
    Step("open", "feature", _opened, opens=True),
    Step("labels", "label", _label_labels, per_batch=False,
         sends=(Send("public_context", To.FEATURES), Send("labels", To.FEATURES))),
    Step("prebins", "feature", _feature_prebins, takes=("public_context", "labels"),
         per_batch=False, sends=(Send("prebins", To.LABEL),)),
    Step("merge", "label", _label_merge, takes=("prebins",), per_batch=False,
         sends=(Send("bins", To.FEATURES),)),
    Step("finish", "feature", _feature_finish, takes=("bins",), per_batch=False,
         sends=(Send("correlation", To.LABEL), Send("model", To.STORE),
                Send("columns", To.PEERS))),
    Step("cross", "feature", _feature_cross, takes=("columns",), per_batch=False,
         sends=(Send("cross", To.LABEL),)),
    Step("select", "label", _label_select, takes=("correlation", "cross"), per_batch=False,
         sends=(Send("report", To.DRIVER), Send("model", To.STORE))),
)


def drive(net: Network, settings: BinningConfig, *, resume: bool = False) -> Iterator[Progress]:
    """One pass: every feature node's bins in one encrypted round, then merges and selection.
    Not resumable: a resumed job starts again (fresh keys, nothing kept from the first try)."""
    net.run("open", extra={"resume": resume}, at=[net.label])
    net.run("open", extra={"resume": resume}, at=net.features)
    yield Progress("setup", {"next_epoch": 0})
    sent = merged(net.run("labels", at=[net.label]))
    prebins = merged(net.run("prebins", parts=sent, at=net.features))
    bins = merged(net.run("merge", parts=prebins, at=[net.label]))
    answers = merged(net.run("finish", parts=bins, at=net.features))
    columns = [p for p in answers if p.name.startswith("columns:")]
    if columns:  # one feature node's [WOE columns] to another's bins: once per pair of nodes
        answers += merged(net.run("cross", parts=columns,
                                  at=sorted({p.recipient for p in columns})))
    reply = net.run("select", parts=[p for p in answers if not p.name.startswith("columns:")],
                    at=[net.label])[net.label]
    yield Progress("epoch", json.loads(reply["report"].data))


def peers_when(settings: BinningConfig) -> bool:
    """Feature nodes seal each other their WOE columns (`To.PEERS`) only for cross-node
    correlations: a job without `max_correlation` or `max_vif` hands them no key of each
    other's."""
    return settings.correlations


def last_report(history: list[dict[str, Any]]) -> dict[str, Any]:
    return history[-1] if history else {}


ALGORITHM = Algorithm(
    name="binning",
    summary="Federated WOE/IV binning (quantile or optbinning's optimal) and IV/correlation "
            "selection; labels reach feature nodes only encrypted.",
    purpose="woe binning", settings=BinningConfig, steps=STEPS, make_role=make_role,
    apply_floors=apply_floors, drive=drive, scoring=None, length_setting="rounds",
    unit="pass", best=last_report, resumable=False, step_deadline_seconds=900.0,
    peers_when=peers_when)

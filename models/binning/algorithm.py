"""Federated WOE/IV binning, declared once: its steps, the roles that run them, and its driver.

  L.labels  fresh BFV keys; public context and [y] -> every F
  F.prebins own bins (floor merges audited), row counts and [events] per slot -> L
  L.merge   decrypt, optimal merges (optbinning on counts), WOE/IV -> merges, WOE, [L's WOE
            columns] -> every F
  F.finish  applies merges, stores its bins/WOE table; correlations (pairs, masked sums) -> L
  L.select  IV and correlation selection; stores the IV table; reports it to the driver
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


def apply_floors(settings: BinningConfig, floors: Floors) -> BinningConfig:
    """A job asking for bins smaller than this node's floor is refused (and audited)."""
    check_floor("[binning] min_bin_rows", settings.min_bin_rows, floors.min_bin_rows,
                "min_bin_rows")
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
    return {"correlation": answer, "model": model}


def _label_select(role: LabelParty, call: Call) -> Mapping[str, Output]:
    report = role.select(call.each("correlation"))
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
         sends=(Send("correlation", To.LABEL), Send("model", To.STORE))),
    Step("select", "label", _label_select, takes=("correlation",), per_batch=False,
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
    reply = net.run("select", parts=answers, at=[net.label])[net.label]
    yield Progress("epoch", json.loads(reply["report"].data))


def last_report(history: list[dict[str, Any]]) -> dict[str, Any]:
    return history[-1] if history else {}


ALGORITHM = Algorithm(
    name="binning",
    summary="Federated WOE/IV binning (quantile or optbinning's optimal) and IV/correlation "
            "selection; labels reach feature nodes only encrypted.",
    purpose="woe binning", settings=BinningConfig, steps=STEPS, make_role=make_role,
    apply_floors=apply_floors, drive=drive, scoring=None, length_setting="rounds",
    unit="pass", best=last_report, resumable=False, step_deadline_seconds=900.0)

"""The vocabulary every algorithm declares itself in: steps, what they take and send, drivers.

An algorithm is declared once (`Algorithm`): its settings model, its steps (which role runs each,
which parts it takes, which it sends to whom), the role objects it builds from a node's data, and
a driver that walks the steps. Three runtimes walk that one declaration:

- the coordinator's job runner (`coordinator/jobs.py`) runs the driver over gRPC;
- the node's one generic step handler (`node/steps.py`) unseals inputs, calls the declared
  step function on its role object, seals outputs to their declared recipients, checkpoints;
- the in-process runner (`models/runtime.py`) used by tests and benchmarks.

Part naming (the only convention a step function has to know): a part sent to one feature node is
named `base:party` (the recipient); a part a feature node sends to the label node is named
`base:party` (the sender); a part a feature node sends to another feature node (`To.PEERS`) is
named `base:sender>recipient`; a part for the driver or broadcast to every node is named `base`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from common.errors import ProtocolError
from common.payload import Payload

Role = Literal["label", "feature"]


class To(enum.Enum):
    """Where a step's output goes."""

    LABEL = "label"  # sealed to the job's label node
    FEATURES = "features"  # sealed to each feature node (one payload per recipient)
    PEERS = "peers"  # from a feature node, sealed to the other feature nodes it names
    DRIVER = "driver"  # plain, to the coordinator's driver (arbiter, reports, counts)
    STORE = "store"  # never leaves the node: written to the node's model file


@dataclass(frozen=True)
class Send:
    """One output of a step."""

    part: str
    to: To


@dataclass(frozen=True)
class StepKey:
    """Idempotency key of one protocol step: a retry with the same key gets the same answer."""

    job: str
    epoch: int
    batch: int
    step: str


@dataclass
class Call:
    """What a step function gets besides its role object."""

    key: StepKey
    inputs: Mapping[str, bytes]
    extra: Mapping[str, Any]
    me: str
    label: str
    features: tuple[str, ...]
    memo: dict[str, Any]
    columns: tuple[str, ...] = ()  # this node's feature names, in its table's order

    def part(self, base: str) -> bytes:
        """This party's copy of part `base` (named `base:me` or `base`)."""
        for name in (f"{base}:{self.me}", base):
            if name in self.inputs:
                return self.inputs[name]
        raise ProtocolError(f"step {self.key.step} needs part {base!r}; it was not sent")

    def peers(self, base: str) -> dict[str, bytes]:
        """Part `base` from every other feature node that sent this one a copy (`To.PEERS`),
        by sender, in the job's order of feature nodes."""
        return {f: self.inputs[f"{base}:{f}>{self.me}"] for f in self.features
                if f"{base}:{f}>{self.me}" in self.inputs}

    def each(self, base: str) -> dict[str, bytes]:
        """Part `base` from every feature node that sent one (at the label node)."""
        return {f: self.inputs[f"{base}:{f}"] for f in self.features
                if f"{base}:{f}" in self.inputs}


Output = bytes | Mapping[str, bytes]  # one payload, or one per feature node (FEATURES, PEERS)
StepFn = Callable[[Any, Call], Mapping[str, Output]]


@dataclass(frozen=True)
class Step:
    """One step of an algorithm at one role."""

    name: str
    role: Role
    run: StepFn
    takes: tuple[str, ...] = ()
    sends: tuple[Send, ...] = ()
    per_batch: bool = True  # False: the step key's batch is -1 (epoch-level steps)
    opens: bool = False  # builds the role object (first step of a job)
    checkpoint: bool = False  # the node saves the role's state after the step

    def sent(self, part: str) -> Send:
        for send in self.sends:
            if send.part == part:
                return send
        raise ProtocolError(f"step {self.name} at a {self.role} node may not send {part!r}")


class Floors(BaseModel):
    """Security floors: the `[floors]` table of a node's own config. A job may ask for more
    protection, never less; one that asks for less is refused at set-up, naming the setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_batch: int = Field(default=64, ge=2)
    """Smallest training batch this node answers: tiny batches let a peer solve for values."""
    min_mask_bits: int = Field(default=40, ge=40, le=64)
    """Fewest bits of statistical hiding for every value the arbiter decrypts."""
    min_rows_per_column: int = Field(default=30, ge=1)
    """Label node: fewest training rows per weight of any feature node (a node's final weights
    are linear in the labels; nearly as many weights as rows would let it solve for them)."""
    min_validation_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Label node: smallest share of its rows held out for validation (0: train = test)."""
    min_histogram_rows: int = Field(default=128, ge=1)
    """Feature node: fewest rows in a tree node it builds histograms for (boosting)."""
    min_bin_rows: int = Field(default=128, ge=1)
    """Feature node: fewest rows in any bin whose (encrypted) label counts it answers (WOE)."""
    share_correlations: bool = True
    """Feature node: whether it answers a binning job that asks for VIF (`max_vif`) with the
    correlation matrix of its own WOE-encoded columns; false refuses such jobs (audited)."""


class BelowFloor(ProtocolError):
    """A job asked for less protection than this node's own floor."""

    def __init__(self, setting: str, asked: float, floor: float, floor_name: str) -> None:
        super().__init__(f"{setting} = {asked:g} is below this node's minimum of {floor:g} "
                         f"([floors] {floor_name} in its config); ask for at least that")
        self.setting, self.asked, self.floor = setting, asked, floor
        self.floor_name = floor_name

    def audit_details(self) -> dict[str, Any]:
        """What the node's audit log records of the refusal (settings and floors, no data)."""
        return {"setting": self.setting, "asked": self.asked, "floor": self.floor,
                "floor_name": self.floor_name}


def check_floor(setting: str, asked: float, floor: float, floor_name: str) -> None:
    """Refuse (BelowFloor) when a job asks for less than a node's floor."""
    if asked < floor:
        raise BelowFloor(setting, asked, floor, floor_name)


class JobSpec(BaseModel):
    """What the coordinator tells every node when it opens a job (the header of `open`)."""

    model_config = ConfigDict(extra="forbid")

    label: str
    features: list[str]
    align_job: str
    settings: dict[str, Any] = {}
    resume: bool = False


@dataclass(frozen=True)
class RoleSetup:
    """What a node hands an algorithm to build its role object for a job."""

    job: str
    party: str
    role: Role
    label: str
    features: tuple[str, ...]
    columns: tuple[str, ...]
    X: np.ndarray  # label: its rows in the job's training order; feature: its whole table
    y: np.ndarray | None  # label only, in the same order as X
    alignment: Any  # feature only: models.vlr.FeatureAlignment
    stored: Callable[[str, str], bytes] | None = None
    """This node's saved model file `name` of an earlier job (`stored(job, name)`), for an
    algorithm built on another job's results (a scorecard on a binning job's bins)."""


@dataclass(frozen=True)
class Progress:
    """What a driver yields: `setup` once the parties are open, one `epoch` per round, and a
    driver that computes its figures once at the end yields them as `final` (same keys as the
    last round's report, which it replaces)."""

    kind: Literal["setup", "epoch", "final"]
    report: dict[str, Any] = field(default_factory=dict)


class Network(Protocol):
    """How a driver reaches the parties (gRPC through the coordinator, or in-process)."""

    job_id: str
    label: str
    features: tuple[str, ...]
    vault: MutableMapping[str, bytes]  # the driver's secrets that must survive a resume

    def run(self, step: str, epoch: int = 0, batch: int = 0,
            parts: Sequence[Payload] = (), *, extra: Mapping[str, Any] | None = None,
            at: Sequence[str] | None = None) -> dict[str, dict[str, Payload]]:
        """Run `step` at every party whose role declares it (or only at parties `at`).

        A payload with a recipient goes to that party only; one without goes to every callee.
        Returns each callee's outputs for the driver and for other nodes, by party.
        """
        ...


def merged(replies: Mapping[str, Mapping[str, Payload]]) -> list[Payload]:
    """Every payload of every reply (names are unique across parties by the naming rule)."""
    return [p for reply in replies.values() for p in reply.values()]


Driver = Callable[..., Iterator[Progress]]
Prepare = Callable[[Any, Sequence[str], Callable[[str], Mapping[str, Any] | None]], Any]


@dataclass(frozen=True)
class Algorithm:
    """One algorithm, declared once; see the module docstring."""

    name: str
    summary: str  # one line for `fedcredit train NAME --help`
    purpose: str  # for audit entries: "vertical-lr training"
    settings: type[BaseModel]
    steps: tuple[Step, ...]
    make_role: Callable[[RoleSetup, Any], Any]  # (setup, settings) -> role object
    apply_floors: Callable[[Any, Floors], Any]  # (settings, node floors) -> settings or raise
    drive: Driver  # drive(network, settings, *, resume=False, **runtime args)
    scoring: Any  # how its saved parts score jointly (a models.scoring.ScoringKind), or None
    length_setting: str  # the setting that bounds the job's rounds ("max_epochs", "trees")
    unit: str  # what one round is called ("epoch", "tree")
    best: Callable[[list[dict[str, Any]]], dict[str, Any]]  # the round a model is reported by
    resumable: bool = True  # False: a resumed job starts again from its first round
    step_deadline_seconds: float = 300.0
    prepare: Prepare | None = None
    """Fills settings that refer to another job's results the coordinator holds anyway (its
    reports), once, when the job is submitted: (settings, the job's parties, report of a done
    job by id or None) -> settings. A scorecard takes its characteristics from a binning job."""
    peers_when: Callable[[Any], bool] | None = None
    """Whether a job with these (validated) settings sends parts between feature nodes: only
    then are they handed each other's sealing keys (`feature_peers`). None: whenever the
    algorithm declares a `To.PEERS` send."""

    @property
    def model_file(self) -> str:
        """File name of a party's saved part in `state/models/<job>/` (scoring reads it)."""
        return str(self.scoring.model_file) if self.scoring is not None else f"{self.name}.json"

    def step(self, name: str, role: Role) -> Step:
        for step in self.steps:
            if step.name == name and step.role == role:
                return step
        raise ProtocolError(f"{self.name} has no step {name!r} for a {role} node")

    def role_of(self, name: str) -> set[Role]:
        roles: set[Role] = {s.role for s in self.steps if s.name == name}
        if not roles:
            raise ProtocolError(f"{self.name} has no step {name!r}")
        return roles

    def node_to_node(self) -> set[str]:
        """Part names that travel between nodes: they must arrive sealed."""
        return {send.part for step in self.steps for send in step.sends
                if send.to in (To.LABEL, To.FEATURES, To.PEERS)}

    def feature_peers(self, settings: BaseModel) -> bool:
        """Whether a job with these settings has feature nodes send each other parts: then each
        gets the others' sealing keys when the job opens, else it knows only the label node's
        (least privilege: a key is handed out only to a node that will seal to it)."""
        if not any(send.to is To.PEERS for step in self.steps for send in step.sends):
            return False
        return self.peers_when is None or bool(self.peers_when(settings))

    def rounds(self, settings: BaseModel) -> int:
        return int(getattr(settings, self.length_setting))


def two_roles(label_role: Callable[..., Any], feature_role: Callable[..., Any],
              ) -> Callable[[RoleSetup, Any], Any]:
    """`make_role` for an algorithm whose label role is built from (job, X, y, feature parties,
    settings) and whose feature role from (party, job, X, alignment, settings)."""

    def make_role(setup: RoleSetup, settings: Any) -> Any:
        if setup.role == "label":
            if setup.y is None:
                raise ProtocolError("a label node needs labels")
            return label_role(setup.job, setup.X, setup.y, setup.features, settings)
        return feature_role(setup.party, setup.job, setup.X, setup.alignment, settings)

    return make_role


def address(step: Step, outputs: Mapping[str, Output], call: Call) -> list[tuple[To, Payload]]:
    """Name and address a step's outputs by its declaration (unsealed; the node seals)."""
    out: list[tuple[To, Payload]] = []
    for base, value in outputs.items():
        send = step.sent(base)
        if send.to is To.FEATURES:
            per = value if isinstance(value, Mapping) else {f: value for f in call.features}
            for party, data in per.items():
                if party not in call.features:
                    raise ProtocolError(f"{base!r} addressed to {party!r}, not a feature node")
                out.append((send.to, Payload(f"{base}:{party}", data, sender=call.me,
                                             recipient=party)))
            continue
        if send.to is To.PEERS:
            if not isinstance(value, Mapping):
                raise ProtocolError(f"{base!r} goes to the feature nodes it names, by name")
            for party, data in value.items():
                if party not in call.features or party == call.me:
                    raise ProtocolError(f"{base!r} addressed to {party!r}, not another "
                                        "feature node")
                out.append((send.to, Payload(f"{base}:{call.me}>{party}", data, sender=call.me,
                                             recipient=party)))
            continue
        if isinstance(value, Mapping):
            raise ProtocolError(f"{base!r} goes to one recipient, not one per feature node")
        if send.to is To.LABEL:
            out.append((send.to, Payload(f"{base}:{call.me}", value, sender=call.me,
                                         recipient=call.label)))
        else:
            out.append((send.to, Payload(base, value, sender=call.me)))
    return out


def accepts(step: Step, name: str) -> bool:
    """Whether a part called `name` is one the step declares it takes."""
    return name.split(":", 1)[0] in step.takes

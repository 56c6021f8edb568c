"""A horizontal training job: the banks and their data, rounds, SecAgg+ and DP settings."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from common.errors import DataValidationError, ProtocolError
from common.names import check_party_name
from models.hfl.model import HyperParams
from models.hfl.settings import MIN_SECAGG_BANKS


class BankSpec(BaseModel):
    """One bank: its name and its data (a node TOML config, or a table file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    node_config: Path | None = None
    table: Path | None = None
    id_column: str = "id"
    label_column: str = "default"
    id_format: Literal["uscc", "any"] = "uscc"

    @field_validator("name")
    @classmethod
    def _party_name(cls, value: str) -> str:
        return check_party_name(value)

    @model_validator(mode="after")
    def _one_source(self) -> BankSpec:
        if (self.node_config is None) == (self.table is None):
            raise ValueError(f"bank {self.name}: give exactly one of node_config or table")
        return self

    def node_config_args(self) -> dict[str, Any]:
        """The key/values this bank's SuperNode gets as --node-config."""
        if self.node_config is not None:
            return {"bank": self.name, "node-config": str(self.node_config.resolve())}
        assert self.table is not None
        return {"bank": self.name, "table": str(self.table.resolve()),
                "id-column": self.id_column, "label-column": self.label_column,
                "id-format": self.id_format}


class DpSpec(BaseModel):
    """Central differential privacy: Gaussian noise at the coordinator, clipping at each bank."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    noise_multiplier: float = Field(gt=0)
    clipping_norm: float = Field(default=1.0, gt=0)
    delta: float = Field(default=1e-5, gt=0, lt=1)


class HflJob(BaseModel):
    """A horizontal training job (the `train hfl --config job.toml` file, validated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    banks: list[BankSpec] = Field(min_length=2)
    rounds: int = Field(default=10, ge=1)
    local_epochs: int = Field(default=1, ge=1)
    lr: float = Field(default=0.5, gt=0)
    batch_size: int = Field(default=0, ge=0)
    """0 = full batch."""
    l2: float = Field(default=0.0, ge=0)
    holdout: float = Field(default=0.2, gt=0, lt=1)
    seed: int = Field(default=0, ge=0)
    secagg: bool = True
    secagg_threshold: float = Field(default=0.67, gt=0, le=1)
    stage_timeout: float = Field(default=120.0, gt=0)
    dp: DpSpec | None = None
    job_id: str = "hfl"
    min_banks: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _distinct_banks(self) -> HflJob:
        names = [b.name for b in self.banks]
        if len(set(names)) != len(names):
            raise ValueError("bank names must be distinct")
        return self

    def check_privacy(self) -> None:
        """Refuse secure aggregation over two banks without DP (each would read the other's)."""
        if self.secagg and len(self.banks) < MIN_SECAGG_BANKS and self.dp is None:
            raise ProtocolError(
                f"refusing secure aggregation over {len(self.banks)} banks without differential "
                "privacy: from the sum each bank reads the other's update. Add banks (at least "
                f"{MIN_SECAGG_BANKS}) or turn on differential privacy (the job's dp table)"
            )

    def hyper_params(self) -> HyperParams:
        return HyperParams(local_epochs=self.local_epochs, lr=self.lr,
                           batch_size=self.batch_size, l2=self.l2)


def load_job(path: Path) -> HflJob:
    """Read a job TOML file; relative data paths are taken relative to its folder.

    Example::

        rounds = 10            # also: local_epochs, lr, batch_size (0 = full), secagg, ...
        [[banks]]
        name = "bank-1"
        node_config = "bank_1.toml"        # the bank's node config, or a table:
        [[banks]]
        name = "bank-2"
        table = "bank_2.csv"
        label_column = "y"
        id_format = "any"
        [dp]                               # optional: central DP
        noise_multiplier = 1.0
        clipping_norm = 1.0
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise DataValidationError(f"job config {path}: {err}") from err
    for bank in raw.get("banks", []):
        for key in ("node_config", "table"):
            if key in bank and not Path(bank[key]).is_absolute():
                bank[key] = str(path.parent / bank[key])
    try:
        return HflJob.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in err.errors(include_url=False))
        raise DataValidationError(f"job config {path}: {problems}") from err


def split_rows(csv_path: Path, out_dir: Path, banks: int, *, seed: int = 1) -> list[Path]:
    """Split a CSV by rows into ``banks`` files with the same header (disjoint customers)."""
    lines = Path(csv_path).read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    order = np.random.default_rng(seed).permutation(len(rows))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, part in enumerate(np.array_split(order, banks), start=1):
        path = out_dir / f"bank_{k}.csv"
        path.write_text("\n".join([header, *(rows[i] for i in part)]) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def give_credit_job(csv_path: Path, out_dir: Path, *, banks: int = 3, **settings: Any) -> HflJob:
    """A job over ``csv_path`` (id, y, x0..) split by rows among ``banks`` banks."""
    paths = split_rows(csv_path, out_dir, banks)
    specs = [BankSpec(name=f"bank-{k}", table=p, label_column="y", id_format="any")
             for k, p in enumerate(paths, start=1)]
    return HflJob(banks=specs, **settings)



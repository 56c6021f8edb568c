"""Node configuration: a TOML file validated with pydantic, overridable by FEDCREDIT_NODE_* env."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from common.errors import DataValidationError, describe_validation
from common.limits import MAX_SCORE_IDS, WireLimits
from common.names import check_party_name
from models.protocol import Floors
from node.monitoring.limits import MonitoringConfig
from node.trust import TrustConfig

ENV_PREFIX = "FEDCREDIT_NODE_"
ENV_NESTED_DELIMITER = "__"

_HOST_PORT_RE = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})")


def _check_address(value: str, *, lowest_port: int = 1) -> str:
    """Check a ``host:port`` address (IPv6 hosts in brackets) and return it unchanged."""
    match = _HOST_PORT_RE.fullmatch(value)
    if match is None or not lowest_port <= int(match["port"]) <= 65535:
        raise ValueError(
            f"expected host:port (port {lowest_port}-65535, IPv6 in brackets), got {value!r}"
        )
    return value


class TlsConfig(BaseModel):
    """Mutual-TLS material: the network CA, this node's certificate and its private key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca: Path
    cert: Path
    key: Path


class DataConfig(BaseModel):
    """Where the node's one table comes from and how its columns are read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["csv", "parquet", "sql"]
    path: Path | None = None
    """CSV or Parquet file (source = csv / parquet)."""
    query: str | None = None
    """SQL over DuckDB (source = sql); it may read files itself, e.g. ``read_csv('x.csv')``."""
    database: Path | None = None
    """DuckDB database file the query runs against (source = sql, optional)."""
    id_column: str = "id"
    label_column: str | None = None
    features: list[str] | None = None
    """Feature columns; None means every column except the id and the label."""
    id_format: Literal["uscc", "any"] = "uscc"
    base_dir: Path | None = Field(default=None, exclude=True)
    """Folder relative file names in ``query`` are looked up in; set by load_node_config."""
    refresh_seconds: float = Field(default=0.0, ge=0)
    """Seconds between re-reads of the source (0: never; `fedcredit nodes reload` still works).
    A file is read again only when it changed; a SQL query runs again every time."""

    @field_validator("id_column")
    @classmethod
    def _non_empty_id_column(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("features")
    @classmethod
    def _distinct_features(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must list at least one column (or be left out to use every column)")
        if any(not name for name in value):
            raise ValueError("column names must not be empty")
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"columns listed more than once: {', '.join(repeated)}")
        return value

    @model_validator(mode="after")
    def _source_fields(self) -> DataConfig:
        if self.source in ("csv", "parquet"):
            if self.path is None:
                raise ValueError(f"data.path is required for source = {self.source!r}")
            if self.query is not None or self.database is not None:
                raise ValueError(
                    f"data.query and data.database are for source = 'sql', not {self.source!r}"
                )
        else:
            if not self.query or not self.query.strip():
                raise ValueError("data.query is required for source = 'sql'")
            if self.path is not None:
                raise ValueError("data.path is for csv/parquet; with source = 'sql' use data.query")
        if self.features is not None and self.id_column in self.features:
            raise ValueError(f"data.features must not contain the id column {self.id_column!r}")
        if self.label_column is not None:
            if self.label_column == self.id_column:
                raise ValueError("data.label_column and data.id_column must differ")
            if self.features is not None and self.label_column in self.features:
                raise ValueError(
                    f"data.features must not contain the label column {self.label_column!r}"
                )
        return self


class ScoringCaps(BaseModel):
    """Feature node: what one requesting bank may ask of it (the `[scoring]` table, DESIGN §4.5).

    Days are UTC days. Counters live in `scoring/budget.sqlite` in the state directory, so they
    survive restarts. A request over a per-request cap is refused whole; an enterprise over a
    per-enterprise cap is refused alone (the rest of the batch is answered). Every feature node of
    a network should keep the same per-enterprise caps: where nodes disagree on an id, the
    coordinator answers nothing for that request (one node's part alone must never reach the bank).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    daily_budget: int = Field(default=20, ge=1)
    """Answers about one enterprise to one bank a day (an asked id counts, held here or not)."""
    max_ids_per_request: int = Field(default=1_000_000, ge=1, le=MAX_SCORE_IDS)
    """Ids in one scoring request."""
    max_requests_per_day: int = Field(default=100_000, ge=1)
    """Scoring requests answered to one bank a day."""
    max_model_versions: int = Field(default=3, ge=1)
    """Distinct models (training jobs) one bank may score one enterprise with in a period:
    each model version releases another linear score of the same features."""
    model_period_days: int = Field(default=30, ge=1, le=366)
    """The period of `max_model_versions`, in days (today and the days before it)."""


class NodeConfig(BaseSettings):
    """One node: who it is, where it listens, its TLS material, state folder and table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        frozen=True,
    )

    party: str
    role: Literal["label", "feature"]
    listen: str = "127.0.0.1:50051"
    coordinator: str
    advertise: str | None = None
    """Address the coordinator should call; None means ``listen`` (see advertise_address)."""
    tls: TlsConfig
    state_dir: Path
    data: DataConfig
    floors: Floors = Floors()
    """Security floors no job can lower (the `[floors]` table; see models.protocol.Floors)."""
    scoring: ScoringCaps = ScoringCaps()
    """Feature node: caps on what a bank may ask (the `[scoring]` table; see ScoringCaps)."""
    monitoring: MonitoringConfig = MonitoringConfig()
    """Feature node: its own early-warning limits (the `[monitoring]` table; see
    node.monitoring.limits)."""
    trust: TrustConfig = TrustConfig()
    """Pinned peer certificates (the `[trust]` table, `peers = { core = "AB:..." }`)."""
    limits: WireLimits = WireLimits()
    """Sizes every incoming stream and step is checked against before it is buffered."""
    anchor_seconds: float = Field(default=300.0, ge=0)
    """Seconds between deposits of the signed audit head with the coordinator (0: only after
    each job, each alignment and at shutdown)."""
    heartbeat_seconds: float = Field(default=15.0, gt=0)
    """How often the node checks that the coordinator still knows it, and registers again if
    the coordinator lost its record (restarted on a new state folder)."""

    @field_validator("party")
    @classmethod
    def _party_name(cls, value: str) -> str:
        return check_party_name(value)

    @field_validator("listen")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        return _check_address(value, lowest_port=0)  # port 0: any free port (tests, demo)

    @field_validator("coordinator", "advertise")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return None if value is None else _check_address(value)

    @model_validator(mode="after")
    def _label_column_matches_role(self) -> NodeConfig:
        if self.role == "label" and self.data.label_column is None:
            raise ValueError("data.label_column is required for role = 'label'")
        if self.role == "label" and self.monitoring.limits:
            raise ValueError("[monitoring] limits are a feature node's: the bank's early warning "
                             "is its policy's [monitoring]")
        if self.role == "feature" and self.data.label_column is not None:
            raise ValueError(
                "data.label_column is not allowed for role = 'feature' (only the label node "
                "holds labels); remove it, or set role = 'label'"
            )
        return self

    @property
    def advertise_address(self) -> str:
        """The address the coordinator should call: ``advertise``, else ``listen``."""
        return self.advertise or self.listen

    def resolve_paths(self, base_dir: Path) -> NodeConfig:
        """Return a copy whose relative paths are taken relative to ``base_dir``."""
        base = base_dir.expanduser().absolute()

        def fix(path: Path | None) -> Path | None:
            if path is None:
                return None
            path = path.expanduser()
            return path if path.is_absolute() else base / path

        tls = self.tls.model_copy(
            update={"ca": fix(self.tls.ca), "cert": fix(self.tls.cert), "key": fix(self.tls.key)}
        )
        data = self.data.model_copy(
            update={
                "path": fix(self.data.path),
                "database": fix(self.data.database),
                "base_dir": fix(self.data.base_dir) or base,
            }
        )
        return self.model_copy(update={"tls": tls, "data": data, "state_dir": fix(self.state_dir)})

    def to_toml(self, relative_to: Path | None = None) -> str:
        """Render as TOML; paths under ``relative_to`` are written relative to it."""
        base = relative_to.expanduser().absolute() if relative_to is not None else None

        def plain(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items() if v is not None}
            if isinstance(value, list):
                return [plain(v) for v in value]
            if isinstance(value, Path):
                if base is not None and value.is_absolute() and value.is_relative_to(base):
                    return value.relative_to(base).as_posix()
                return str(value)
            return value

        return tomli_w.dumps(plain(self.model_dump(mode="python")))


def load_node_config(path: Path) -> NodeConfig:
    """Read a node's TOML config (env FEDCREDIT_NODE_* overrides it) and resolve its paths.

    Raises DataValidationError naming the file and every invalid field.
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"node config {path}: file not found")
    try:
        sources: tuple[PydanticBaseSettingsSource, ...] = (
            EnvSettingsSource(NodeConfig),
            TomlConfigSettingsSource(NodeConfig, toml_file=path),
        )
        # Env first, then the file: the documented pre-built-sources hook of BaseSettings,
        # which mypy cannot see through pydantic's dataclass transform.
        config = NodeConfig(_build_sources=(sources, {}))  # type: ignore[call-arg]
    except tomllib.TOMLDecodeError as err:
        raise DataValidationError(f"node config {path}: not valid TOML: {err}") from err
    except ValidationError as err:
        raise DataValidationError(_describe_errors(path, err)) from err
    return config.resolve_paths(path.parent)


def write_node_config(config: NodeConfig, path: Path) -> None:
    """Write ``config`` as TOML to ``path``, paths under its folder written relative to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.to_toml(relative_to=path.parent), encoding="utf-8")


def _describe_errors(path: Path, err: ValidationError) -> str:
    """Every invalid field, then the environment overrides in effect (they may be the cause)."""
    text = describe_validation(err, f"node config {path}")
    overrides = sorted(name for name in os.environ if name.upper().startswith(ENV_PREFIX))
    if overrides:
        text += f"\n  (environment overrides in effect: {', '.join(overrides)})"
    return text

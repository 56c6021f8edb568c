"""Coordinator configuration: TOML file with environment-variable overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from common.errors import DataValidationError, describe_validation
from common.limits import WireLimits
from common.names import check_party_name

PartyRole = Literal["label", "feature", "any"]


class CoordinatorTls(BaseModel):
    """PEM files of the network CA and the coordinator's own certificate and key."""

    ca: Path
    cert: Path
    key: Path


class CoordinatorConfig(BaseSettings):
    """What `fedcredit coordinator serve --config FILE` reads."""

    model_config = SettingsConfigDict(env_prefix="FEDCREDIT_COORDINATOR_",
                                      env_nested_delimiter="__", extra="forbid")

    listen: str = "127.0.0.1:50050"
    state_dir: Path
    tls: CoordinatorTls | None = None
    # Parties allowed to register and the role the operator declared for each
    # (`[parties] bank = "label"`); empty means any party holding a certificate of our CA.
    # The older list form `parties = ["bank", ...]` still reads, as role "any".
    parties: dict[str, PartyRole] = {}
    # Certificate names allowed to run operator calls (align, train, list).
    operators: list[str] = ["operator"]
    psi_deadline_seconds: float = 1800.0
    # Sizes every incoming stream, step and reply is checked against before it is buffered.
    limits: WireLimits = Field(default_factory=WireLimits)
    # Seconds between deposits of this coordinator's signed audit head with the nodes (0: only
    # after each job and at shutdown).
    anchor_seconds: float = Field(default=300.0, ge=0)
    # Pseudonym points one node (or bank) may have evaluated a day: a feature node asking for
    # candidates' pseudonyms as if they were its own rows is bounded by this (DESIGN §4.5).
    pseudonym_evaluations_per_day: int = Field(default=5_000_000, gt=0)

    @field_validator("parties", mode="before")
    @classmethod
    def _list_means_any_role(cls, value: Any) -> Any:
        if isinstance(value, list):  # the older form: names only, any role
            return {name: "any" for name in value}
        return value

    @field_validator("parties", "operators")
    @classmethod
    def _names(cls, names: list[str] | dict[str, str]) -> list[str] | dict[str, str]:
        for name in names:
            check_party_name(name)
        return names

    @property
    def database(self) -> Path:
        return self.state_dir / "coordinator.sqlite"

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings


def load_coordinator_config(path: Path) -> CoordinatorConfig:
    """Read the TOML file; relative paths are taken from the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{path}: coordinator config file not found")
    try:
        raw: dict[str, Any] = TomlConfigSettingsSource(CoordinatorConfig, toml_file=path)()
        config = CoordinatorConfig(**raw)
    except ValidationError as err:
        raise DataValidationError(describe_validation(err, f"coordinator config {path}")) from err
    base = path.parent
    updates: dict[str, Any] = {"state_dir": _resolve(base, config.state_dir)}
    if config.tls is not None:
        updates["tls"] = CoordinatorTls(ca=_resolve(base, config.tls.ca),
                                        cert=_resolve(base, config.tls.cert),
                                        key=_resolve(base, config.tls.key))
    return config.model_copy(update=updates)


def _resolve(base: Path, value: Path) -> Path:
    return value if value.is_absolute() else (base / value).resolve()

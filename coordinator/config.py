"""Coordinator configuration: TOML file with environment-variable overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from common.errors import DataValidationError, describe_validation
from common.names import check_party_name


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
    # Parties allowed to register; empty means any party holding a certificate of our CA.
    parties: list[str] = []
    # Certificate names allowed to run operator calls (align, train, list).
    operators: list[str] = ["operator"]
    psi_deadline_seconds: float = 1800.0

    @field_validator("parties", "operators")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        return [check_party_name(name) for name in names]

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

"""Production mode: with FEDCREDIT_PRODUCTION=1 development-only tools refuse to start."""

from __future__ import annotations

import os

from common.errors import ProductionModeError

PRODUCTION_ENV = "FEDCREDIT_PRODUCTION"


def production_mode() -> bool:
    """True when FEDCREDIT_PRODUCTION=1 (the default `node serve` / `coordinator serve` set)."""
    return os.environ.get(PRODUCTION_ENV, "").strip() == "1"


def default_to_production() -> None:
    """Make production mode the default of a serving process: FEDCREDIT_PRODUCTION=1 unless the
    environment sets it (tests and the launcher set 0 where they use --insecure)."""
    os.environ.setdefault(PRODUCTION_ENV, "1")


def refuse_in_production(what: str) -> None:
    """Raise ProductionModeError naming `what` when production mode is on."""
    if production_mode():
        raise ProductionModeError(f"{what} is a development tool and is refused in production "
                                  f"mode ({PRODUCTION_ENV}=1, the default of `serve`); set "
                                  f"{PRODUCTION_ENV}=0 only on a development machine")

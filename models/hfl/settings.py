"""The run config of one horizontal training job, its refusals, and the DP budget it spends."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from common.errors import ProtocolError

MIN_SECAGG_BANKS = 3
"""With two banks each learns the other's update from the sum: refused unless DP is on."""


@dataclass(frozen=True)
class JobSettings:
    """The run config of one horizontal training job (keys as in app/pyproject.toml)."""

    rounds: int = 3
    local_epochs: int = 1
    lr: float = 0.1
    batch_size: int = 64
    l2: float = 0.0
    holdout: float = 0.2
    seed: int = 0
    banks: int = 3
    min_banks: int = 0
    features: int = 0
    secagg: bool = True
    secagg_threshold: float = 0.67
    max_weight: float = 1000.0
    clipping_range: float = 8.0
    stage_timeout: float = 120.0
    dp_noise: float = 0.0
    dp_clip: float = 1.0
    dp_delta: float = 1e-5
    job_id: str = "hfl"
    result_path: str = ""
    progress_path: str = ""
    audit_path: str = ""

    @property
    def dp(self) -> bool:
        return self.dp_noise > 0.0

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any]) -> JobSettings:
        """Read the settings from Flower's run config (dashes in keys, unknown keys ignored)."""
        values: dict[str, Any] = {}
        for name, default in asdict(cls()).items():
            key = name.replace("_", "-")
            if key in run_config:
                raw = run_config[key]
                values[name] = (str(raw).lower() in ("1", "true", "yes")
                                if isinstance(default, bool) and not isinstance(raw, bool)
                                else type(default)(raw))
        return cls(**values)

    def check(self) -> None:
        """Refuse settings that would leak an individual bank's update (see MIN_SECAGG_BANKS)."""
        if self.banks < 2:
            raise ProtocolError(f"horizontal training needs at least two banks, got {self.banks}")
        if self.secagg and self.banks < MIN_SECAGG_BANKS and not self.dp:
            raise ProtocolError(
                f"secure aggregation over {self.banks} banks protects nothing: each bank can "
                "subtract its own update from the sum and read the other's. Use at least "
                f"{MIN_SECAGG_BANKS} banks, or turn differential privacy on (dp-noise > 0)"
            )
        if self.rounds < 1:
            raise ProtocolError(f"rounds must be at least 1, got {self.rounds}")


def epsilon_spent(rounds: int, noise_multiplier: float, delta: float) -> float:
    """(epsilon, delta)-DP of ``rounds`` Gaussian releases with noise ``noise_multiplier`` x clip.

    Each round adds N(0, (z*C)^2) to the sum of bank updates clipped to C (Flower divides both by
    the number of banks): one bank's presence changes the sum by at most C, so a round is a
    Gaussian mechanism of Renyi-DP alpha/(2 z^2). Composition over k rounds and the standard
    conversion minimised over alpha give eps = rho + 2 sqrt(rho ln(1/delta)), rho = k/(2 z^2).
    Bank-level (not row-level) privacy of the released models, without subsampling.
    """
    if rounds <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    rho = rounds / (2.0 * noise_multiplier**2)
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))

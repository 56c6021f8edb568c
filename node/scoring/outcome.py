"""What the bank learns about each scored enterprise (`Decision`), and how one is made from
the network's answer: decided, refer (no party holds it) or refused (a per-enterprise cap)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.errors import ProtocolError

Versions = tuple[tuple[str, str], ...]

NOBODY_HOLDS = "no party holds this enterprise"
REFUSED_BUDGET = ("refused by the network (daily query budget for this enterprise spent, or "
                  "its models for the period used)")


@dataclass(frozen=True)
class Decision:
    """What the bank learns about one enterprise.

    outcome "decided": score, grade and line from the policy. "refer": no party holds the
    enterprise (the model saw nothing of it; `probability` is the model's neutral output), so no
    score, grade or line: a person decides. "refused": the network would not score it (`reason`
    says why, naming no node); `probability` is NaN.
    """

    id: str
    probability: float
    score: float | None
    grade: str | None
    credit_line: float | None
    parties_covering: int
    reasons: tuple[str, ...]
    outcome: str = "decided"
    reason: str = ""
    snapshots: tuple[tuple[str, str], ...] = ()
    """(party, data snapshot version) of the bank's table and of each feature node that answered."""


def refused_bits(bitmap: bytes, n: int) -> np.ndarray:
    """The ids a bitmap marks (none when it is empty)."""
    if not bitmap:
        return np.zeros(n, dtype=bool)
    if len(bitmap) != (n + 7) // 8:
        raise ProtocolError(f"a refusal bitmap of {len(bitmap)} bytes for {n} ids")
    marked: np.ndarray = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), count=n)
    return marked.astype(bool)


def decision_of(ident: str, probability: float, score: float, grade: str, line: float,
              coverage: int, reasons: tuple[str, ...], refused: bool,
              snapshots: Versions = ()) -> Decision:
    """One enterprise's decision: a grade only when some party holds it and nobody refused."""
    if refused:
        return Decision(id=ident, probability=float("nan"), score=None, grade=None,
                        credit_line=None, parties_covering=0, reasons=(), outcome="refused",
                        reason=REFUSED_BUDGET, snapshots=snapshots)
    if coverage == 0:
        return Decision(id=ident, probability=probability, score=None, grade=None,
                        credit_line=None, parties_covering=0, reasons=reasons, outcome="refer",
                        reason=NOBODY_HOLDS, snapshots=snapshots)
    return Decision(id=ident, probability=probability, score=score, grade=grade,
                    credit_line=line, parties_covering=coverage, reasons=reasons,
                    snapshots=snapshots)

"""A trained model's columns taken from the node's table by name, never by position."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from common.errors import DataValidationError
from node.datasource import NodeTable


class MissingFeature(DataValidationError):
    """The node's table lacks a column a trained model needs."""


def model_columns(table: NodeTable, names: Sequence[str], *, party: str,
                  model: str) -> npt.NDArray[np.float64]:
    """Every row of `table`, with the columns `names` in that order (the model's order).

    A reordered column list gives the same matrix and an extra column is ignored; a missing
    one raises MissingFeature naming it, the model (`model`, e.g. "model m (job j)") and the
    node's table, so scoring is refused rather than computed on the wrong columns.
    """
    where = {name: k for k, name in enumerate(table.features)}
    missing = [name for name in names if name not in where]
    if missing:
        listed = ", ".join(repr(n) for n in missing)
        raise MissingFeature(
            f"{model} needs feature{'s' if len(missing) > 1 else ''} {listed}, which "
            f"{party}'s table {table.source} no longer has; add it back to data.features in "
            f"{party}'s config (with the same values) or train a new model")
    picked: npt.NDArray[np.float64] = table.X[:, [where[name] for name in names]]
    return picked

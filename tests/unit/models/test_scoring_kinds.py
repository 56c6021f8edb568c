"""The scoring kinds table, and a SecureBoost model saved before format v1 refused at load."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from common.errors import ModelFormatError, ProtocolError
from models.scoring import SCORING_KINDS


def test_every_trained_algorithm_has_a_scoring_kind() -> None:
    assert set(SCORING_KINDS) == {"vlr", "sbt", "scorecard"}
    assert SCORING_KINDS["scorecard"].model_file == "scorecard.json"
    assert SCORING_KINDS["sbt"].model_file == "sbt_model.json"
    assert SCORING_KINDS["vlr"].key_file == ""


def test_a_pickled_sbt_model_is_refused_at_both_ends(tmp_path: Path) -> None:
    (tmp_path / "model.sbt").write_bytes(pickle.dumps({"base_margin": 0.0, "trees": []}))
    kind = SCORING_KINDS["sbt"]
    with pytest.raises(ModelFormatError, match="before format v1.*retrain"):
        kind.load_bank(tmp_path, "job", b"")
    with pytest.raises(ModelFormatError, match="before format v1.*retrain"):
        kind.load_feature(tmp_path, "job", b"public")


@pytest.mark.parametrize("algorithm", sorted(SCORING_KINDS))
def test_a_missing_model_is_named(tmp_path: Path, algorithm: str) -> None:
    with pytest.raises(ProtocolError, match="job j"):
        SCORING_KINDS[algorithm].load_feature(tmp_path, "j", b"x")

"""Which jobs hand feature nodes each other's sealing keys: the algorithms' own declarations."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from common.errors import DataValidationError
from models.binning import BinningConfig
from models.protocol import To
from models.registry import ALGORITHMS, algorithm

BINNING = algorithm("binning")


@pytest.mark.parametrize(("settings", "expected"), [
    ({}, True),  # max_correlation = 0.7 by default
    ({"max_correlation": 0.9}, True),
    ({"max_correlation": None, "max_vif": 5.0}, True),
    ({"max_correlation": None}, False),
    ({"max_correlation": None, "max_vif": None, "share_woe": False}, False),
])
def test_binning_hands_out_peer_keys_only_for_cross_node_correlations(
        settings: dict[str, object], expected: bool) -> None:
    assert BINNING.feature_peers(BinningConfig.model_validate(settings)) is expected


def test_without_a_predicate_every_job_of_an_algorithm_with_peer_sends_gets_the_keys() -> None:
    declared = dataclasses.replace(BINNING, peers_when=None)
    assert declared.feature_peers(BinningConfig(max_correlation=None))


@pytest.mark.parametrize("name", ["vlr", "sbt"])
def test_an_algorithm_without_peer_sends_never_hands_them_out(name: str) -> None:
    algo = ALGORITHMS[name]
    assert not [s for step in algo.steps for s in step.sends if s.to is To.PEERS]
    settings = algo.settings.model_validate({})
    assert not algo.feature_peers(settings)
    # a predicate cannot grant keys for parts the steps never send
    assert not dataclasses.replace(algo, peers_when=lambda _: True).feature_peers(settings)


def test_a_toml_job_file_switches_correlations_off(tmp_path: Path) -> None:
    """TOML has no null: "off" in a job file is what null is in JSON, so a bank can run a binning
    job that hands feature nodes no key of each other's from the file it launches."""
    from fedcredit.cli.train import read_job_file
    from models.jobs import parse_job

    path = tmp_path / "binning.toml"
    head = 'label = "bank"\nfeatures = ["core"]\nalign_job = "al"\n[binning]\n'
    path.write_text(head + 'max_correlation = "off"\nmonotonic_trend = "off"\n')
    _, settings = parse_job(BINNING, read_job_file(path))
    assert isinstance(settings, BinningConfig)
    assert settings.max_correlation is None and settings.monotonic_trend is None
    assert not BINNING.feature_peers(settings)
    path.write_text(head + 'max_correlation = "of"\n')
    with pytest.raises(DataValidationError, match="max_correlation"):
        parse_job(BINNING, read_job_file(path))

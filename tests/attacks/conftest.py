"""One capture of both vertical-LR jobs through real processes, shared by every attack test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.attacks.scoring_network import Scoring, scoring_network
from tests.attacks.vlr_transcript import Capture, JobTranscript, capture


@pytest.fixture(scope="session")
def vlr_capture(tmp_path_factory: pytest.TempPathFactory) -> Capture:
    return capture(tmp_path_factory.mktemp("attacks-vlr"))


@pytest.fixture(scope="session")
def vlr_jobs(vlr_capture: Capture) -> dict[str, JobTranscript]:
    return vlr_capture.jobs


@pytest.fixture(scope="session")
def scoring_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scoring]:
    with scoring_network(tmp_path_factory.mktemp("attacks-scoring")) as found:
        yield found

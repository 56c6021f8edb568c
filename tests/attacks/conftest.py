"""One capture of both vertical-LR jobs through real processes, shared by every attack test."""

from __future__ import annotations

import pytest

from tests.attacks.vlr_transcript import JobTranscript, capture


@pytest.fixture(scope="session")
def vlr_jobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, JobTranscript]:
    return capture(tmp_path_factory.mktemp("attacks-vlr"))

"""The runtime contract: the same scenarios against every runtime that can run here.

Adding a runtime (ssh) means adding one entry to the `runtime` fixture's params, with a
RuntimeUnderTest that tells what of a run still runs on it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract.harness import (
    ProbeProject,
    RuntimeUnderTest,
    docker_leftovers,
    make_project,
    process_leftovers,
)


@pytest.fixture(params=["process", "docker"])
def runtime(request: pytest.FixtureRequest) -> RuntimeUnderTest:
    """Each runtime in turn; docker needs a reachable engine (fails under CI=true, else skips)."""
    if request.param == "process":
        return RuntimeUnderTest("process", process_leftovers)
    client = request.getfixturevalue("docker_client")
    repository = request.getfixturevalue("image_repository")
    return RuntimeUnderTest(
        "docker",
        lambda run: docker_leftovers(client, run.id),
        {"image_repository": repository},
    )


@pytest.fixture
def project(tmp_path: Path, runtime: RuntimeUnderTest) -> ProbeProject:
    return make_project(tmp_path, runtime)

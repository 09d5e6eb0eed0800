"""The runtime contract: the same scenarios against every runtime: process, venv, docker, and ssh
(a real agent host over SSH, from tests/agents/sshlab.py, without Docker: a venv there).

Adding a runtime means adding one entry to the `runtime` fixture's params, with a
RuntimeUnderTest that tells what of a run still runs on it and where its run differs.
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.harness import (
    AgentHost,
    ProbeProject,
    RuntimeUnderTest,
    agent_leftovers,
    docker_leftovers,
    make_project,
    process_leftovers,
    ray_leftovers,
)


@pytest.fixture(scope="session")
def agent_lab() -> Iterator:
    """One agent host for every ssh scenario of the session (the agent program is installed on
    it once); needs root and sshd (fails under CI=true, else skips)."""
    from tests.agents.sshlab import Lab, missing_prerequisite

    reason = missing_prerequisite()
    if reason:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(f"{reason} (with CI=true this fails instead of skipping)")
    lab = Lab.create(1)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def agent_host(agent_lab) -> Iterator[AgentHost]:
    """The lab's host added as agent `contract` (to this test's MLLIB_HOME); whatever of its
    runs is still running afterwards is ended."""
    from mllib.agents.api import add_agent

    host = agent_lab.hosts[0]
    if host.sshd_pid is None:
        host.start()
    add_agent("contract", **agent_lab.spec_args(host), gpus=1, trust_host_key=True)
    outside = host.home / f"outside-{secrets.token_hex(4)}"
    outside.mkdir()
    os.chown(outside, host.uid, host.gid)
    yield AgentHost("contract", host.agent_root, outside)
    for proc in host.processes():
        if "mllib" in " ".join(proc.info["cmdline"] or []):
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(params=["process", "venv", "docker", "ssh", "ray", "ray-ship"])
def runtime(request: pytest.FixtureRequest) -> RuntimeUnderTest:
    """Each runtime in turn; docker needs a reachable engine, ssh root and sshd, ray Ray (each
    fails under CI=true, else skips). ssh is an agent without Docker: its runs run in a venv
    there. ray submits jobs to the session's head on loopback (tests/ray/head.py), whose nodes
    share this machine's files; ray-ship to the same head with `[ray] files = "ship"`, from a
    project in the one folder that head cannot see (its nodes get only what the job ships)."""
    if request.param in ("process", "venv"):
        return RuntimeUnderTest(request.param, process_leftovers)
    if request.param.startswith("ray"):
        head = request.getfixturevalue("ray_head")
        ships = request.param == "ray-ship"
        return RuntimeUnderTest(
            "ray",
            lambda run: ray_leftovers(head, run),
            tables={
                "ray": {"address": head.address, "files": "ship" if ships else "shared"},
                "retry": {"max_attempts": 1},  # a failure is the run's outcome, not retried
            },
            ships=ships,
        )
    if request.param == "ssh":
        agent = request.getfixturevalue("agent_host")
        host = request.getfixturevalue("agent_lab").hosts[0]
        return RuntimeUnderTest(
            "ssh",
            lambda run: agent_leftovers(host, run),
            {"local": "process"},  # the runtime on the agent
            {"retry": {"max_attempts": 1}},  # a failure is the run's outcome, not retried
            agent=agent,
        )
    client = request.getfixturevalue("docker_client")
    repository = request.getfixturevalue("image_repository")
    return RuntimeUnderTest(
        "docker",
        lambda run: docker_leftovers(client, run.id),
        {"image_repository": repository},
    )


@pytest.fixture
def project(
    request: pytest.FixtureRequest, tmp_path: Path, runtime: RuntimeUnderTest
) -> ProbeProject:
    folder = request.getfixturevalue("ray_shipped_folder") if runtime.ships else tmp_path
    return make_project(folder, runtime)

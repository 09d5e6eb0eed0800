"""An agent host whose user may use a Docker engine runs remote runs in containers, as `mllib
train` does locally: the lab's second host joins the `docker` group of this machine's real engine
for the test. The same template then gives identical results locally, on a plain agent and on
the Docker agent, and nothing of the run is left in the engine or owned by anyone but the agent's
user."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import mllib
from mllib.agents.api import check_agent
from mllib.runs import views
from mllib.scaffold import init_project
from mllib.workspace import Workspace
from tests.contract.harness import outcome, set_image_repository


@pytest.fixture
def docker_agent(lab, agents, docker_client, image_repository) -> Iterator[str]:
    """Agent h1's user is in the docker group (new logins only) for the length of the test."""
    with lab.hosts[1].in_group("docker"):
        yield agents[1]


def test_an_agent_with_docker_runs_in_a_container_with_identical_results(
    lab, agents, docker_agent, docker_client, image_repository, tmp_path
) -> None:
    plain = agents[0]
    assert check_agent(plain)["docker"] is False
    report = check_agent(docker_agent)
    assert report["docker"] is True and report["runtimes"]["docker"] == "available"
    root = tmp_path / "linear"
    init_project(root, "minimal")
    set_image_repository(root, image_repository)  # the agent builds where this session cleans up
    model = str(root / "model.py")

    runs = {
        "local": mllib.train(model, evaluate=True, runtime="process", seed=3, echo=None),
        "agent": mllib.train(model, evaluate=True, agent=plain, seed=3, echo=None),
        "docker agent": mllib.train(model, evaluate=True, agent=docker_agent, seed=3, echo=None),
    }

    assert {name: run.status for name, run in runs.items()} == dict.fromkeys(runs, "succeeded")
    results = {name: outcome(root, run.id) for name, run in runs.items()}
    assert results["docker agent"] == results["local"] == results["agent"]
    assert results["local"]["series"] and results["local"]["eval"]
    ws = Workspace.find(root)
    shown = {name: views.show(ws, run.id) for name, run in runs.items()}
    assert shown["docker agent"]["runtime"] == shown["agent"]["runtime"] == "ssh"
    assert shown["docker agent"]["runtime_note"].startswith(
        f"agent {docker_agent}, docker runtime there (auto: a Docker engine answers"
    )
    assert shown["agent"]["runtime_note"].startswith(f"agent {plain}, venv runtime there")
    log = Path(shown["docker agent"]["log_path"]).read_text()
    assert f"{image_repository}:" in log and "training on 200 rows" in log  # built, then ran
    docker_run = runs["docker agent"].id
    assert docker_client.containers.list(all=True, filters={"label": f"org.mllib.run={docker_run}"}) == []  # fmt: skip
    host = lab.hosts[1]
    assert not (host.agent_root / "work" / docker_run).exists()  # synced, so released
    assert (
        _owned_by_others(host.agent_root, host.uid) == []
    )  # written as the agent's user, never root


def _owned_by_others(root: Path, uid: int) -> list[str]:
    """Paths under `root` not owned by `uid` (files SQLite removes meanwhile, such as its -wal,
    are passed over)."""
    strangers = []
    for folder, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            path = os.path.join(folder, name)
            try:
                if os.lstat(path).st_uid != uid:
                    strangers.append(path)
            except FileNotFoundError:
                continue
    return strangers

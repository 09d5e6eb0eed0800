"""Parity, the point of the runtimes: every template, trained with the same params and seed, gives
identical metrics, evaluation, predictions and model artifact as a process, in a venv, in
Docker, on an agent without Docker (a venv there) and on an agent with Docker.

The model-artifact hash is compared too: every template's model (cloudpickle, or the pytorch
template's own save()) is byte-identical everywhere; a library that pickled process-specific
values (an `id()`, a temporary path) would be the one allowed exception, and none does here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import tomllib
from pathlib import Path
from typing import Any

import pytest

import mllib
from mllib.protocol.numeric_env import PREFIXES
from mllib.runs import views
from mllib.scaffold import init_project
from mllib.workspace import Workspace
from tests.contract.harness import (
    AgentHost,
    RuntimeUnderTest,
    make_project,
    outcome,
    set_image_repository,
)

NEEDS = {"minimal": None, "sklearn": "sklearn", "pytorch": "torch"}
LOCAL = ("process", "venv", "docker")


def _template(template: str, folder: Path, image_repository: str) -> Path:
    module = NEEDS[template]
    if module and importlib.util.find_spec(module) is None:
        message = f"{module} is not installed here, so the {template} template cannot train"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {message} (scripts/test.sh installs it)")
        pytest.skip(message)
    root = folder / template
    init_project(root, template)
    set_image_repository(root, image_repository)
    return root


def _request(root: Path) -> Any:
    """The request the template's load test sends: any JSON its predict() takes."""
    config = tomllib.loads((root / "mllib.toml").read_text())
    return json.loads(config["loadtest"]["input"])


def _results(root: Path, runs: dict[str, Any], predict_in: dict[str, str]) -> dict[str, Any]:
    """Each run's outcome (params, metric series, evaluation, model hash) and its prediction."""
    request = _request(root)
    found = {}
    for name, run in runs.items():
        assert run.status == "succeeded", f"{name}: {run.error}"
        prediction = mllib.predict(
            request, str(root / "model.py"), run=run.id, runtime=predict_in[name]
        )
        found[name] = {**outcome(root, run.id), "prediction": prediction}
    return found


def _assert_identical(results: dict[str, Any]) -> None:
    reference = results["process"]
    assert reference["series"] and reference["eval"] and reference["prediction"] is not None
    for name, result in results.items():
        for key in ("params", "series", "eval", "prediction", "model"):
            assert result[key] == reference[key], f"{key} differs between process and {name}"


@pytest.mark.timeout(900)  # the template's venv and image are built the first time
@pytest.mark.parametrize("template", sorted(NEEDS))
def test_template_trains_identically_in_every_local_runtime(
    template: str, tmp_path: Path, image_repository: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if platform.machine() == "x86_64" and "OPENBLAS_CORETYPE" not in os.environ:
        # Some machines force OpenBLAS's kernel in their environment; force one that differs
        # from this CPU's own (Prescott: plain SSE3) so the test checks that a venv and a
        # container compute with the kernel a process would, wherever it runs.
        monkeypatch.setenv("OPENBLAS_CORETYPE", "Prescott")
    root = _template(template, tmp_path, image_repository)
    model = str(root / "model.py")

    runs = {
        name: mllib.train(model, evaluate=True, runtime=name, seed=3, echo=lambda _chunk: None)
        for name in LOCAL
    }

    _assert_identical(_results(root, runs, {name: name for name in LOCAL}))
    ws = Workspace.find(root)
    environments = {name: views.show(ws, run.id)["environment"] for name, run in runs.items()}
    assert [environments[name]["runtime"] for name in LOCAL] == list(LOCAL)
    forced = os.environ.get("OPENBLAS_CORETYPE")  # reached every runtime, and was recorded
    assert [environments[name]["numeric_env"].get("OPENBLAS_CORETYPE") for name in LOCAL] == [
        forced
    ] * len(LOCAL)


@pytest.mark.timeout(900)  # the agent builds the template's venv (torch's, too) the first time
@pytest.mark.parametrize("template", sorted(NEEDS))
def test_template_trains_identically_on_agents_with_and_without_docker(
    template: str,
    tmp_path: Path,
    image_repository: str,
    agent_host: AgentHost,
    agent_lab: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An agent's runs take the agent host's own BLAS/threading variables (its CPU, its cores):
    # here the agent is this machine, so the local run takes none either, to compare like with
    # like wherever the suite runs (some machines force OpenBLAS's kernel in their environment).
    for name in [n for n in os.environ if n.startswith(PREFIXES)]:
        monkeypatch.delenv(name)
    root = _template(template, tmp_path, image_repository)
    model = str(root / "model.py")
    host = agent_lab.hosts[0]

    runs = {
        "process": mllib.train(model, evaluate=True, runtime="process", seed=3, echo=None),
        "agent": mllib.train(model, evaluate=True, agent=agent_host.name, seed=3, echo=None),
    }
    with host.in_group("docker"):  # new logins of the agent's user may use the engine
        runs["docker agent"] = mllib.train(
            model, evaluate=True, agent=agent_host.name, seed=3, echo=None
        )

    results = _results(root, runs, dict.fromkeys(runs, "process"))  # synced models predict here
    _assert_identical(results)
    ws = Workspace.find(root)
    shown = {name: views.show(ws, run.id) for name, run in runs.items()}
    assert shown["agent"]["runtime_note"].startswith(f"agent {agent_host.name}, venv runtime there")
    assert shown["docker agent"]["runtime_note"].startswith(
        f"agent {agent_host.name}, docker runtime there"
    )
    assert shown["agent"]["environment"]["runtime"] == "venv"
    assert shown["docker agent"]["environment"]["runtime"] == "docker"


def test_probe_model_is_identical_under_every_local_runtime(
    tmp_path: Path, image_repository: str
) -> None:
    """The contract's probe model, whose pickle holds data read through a data mount."""
    project = make_project(
        tmp_path,
        RuntimeUnderTest("docker", lambda run: [], {"image_repository": image_repository}),
    )

    runs = [project.train(runtime=name) for name in LOCAL]

    process, *others = (outcome(project.root, run.id) for run in runs)
    assert [run.status for run in runs] == ["succeeded"] * len(LOCAL)
    assert others == [process] * len(others)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("files", ["shared", "ship"])
@pytest.mark.parametrize("template", sorted(NEEDS))
def test_template_trains_identically_on_ray(
    template: str, files: str, request: pytest.FixtureRequest, image_repository: str, ray_head: Any
) -> None:
    """A process run and a job on the session's Ray head (tests/ray/head.py), each predicting
    where it trained: the same metrics, evaluation, model bytes and prediction; with the files
    shipped, from a project the head cannot see (the job brings the code and takes the model
    back through its log)."""
    folder = request.getfixturevalue("ray_shipped_folder" if files == "ship" else "tmp_path")
    root = _template(template, folder, image_repository)
    with (root / "mllib.toml").open("a") as toml:
        toml.write(f'\n[ray]\naddress = "{ray_head.address}"\nfiles = "{files}"\n')
    model = str(root / "model.py")

    runs = {
        name: mllib.train(model, evaluate=True, runtime=name, seed=3, echo=None)
        for name in ("process", "ray")
    }

    _assert_identical(_results(root, runs, {"process": "process", "ray": "ray"}))
    ws = Workspace.find(root)
    assert views.show(ws, runs["ray"].id)["environment"]["runtime"] == "ray"
    log = (root / ".mllib" / "runs" / runs["ray"].id / "output.log").read_text()
    assert "mllib-ray" not in log  # a shipped job's channel records are taken out of its output

"""Parity, the point of the Docker runtime: every template, trained with the same params and
seed, gives identical metrics and an identical model artifact under process and docker."""

from __future__ import annotations

import importlib.util
import os
import platform
from pathlib import Path

import pytest

import mllib
from mllib.scaffold import init_project
from tests.contract.harness import RuntimeUnderTest, make_project, outcome, set_image_repository

NEEDS = {"minimal": None, "sklearn": "sklearn", "pytorch": "torch"}


@pytest.mark.parametrize("template", sorted(NEEDS))
def test_template_trains_identically_in_process_and_docker(
    template: str, tmp_path: Path, image_repository: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if platform.machine() == "x86_64" and "OPENBLAS_CORETYPE" not in os.environ:
        # Some machines force OpenBLAS's kernel in their environment; force one that differs
        # from this CPU's own (Prescott: plain SSE3) so the test checks that a container
        # computes with the kernel a process would, wherever it runs.
        monkeypatch.setenv("OPENBLAS_CORETYPE", "Prescott")
    module = NEEDS[template]
    if module and importlib.util.find_spec(module) is None:
        message = f"{module} is not installed here, so the {template} template cannot train"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {message} (scripts/test.sh installs it)")
        pytest.skip(message)
    root = tmp_path / template
    init_project(root, template)
    set_image_repository(root, image_repository)
    model = str(root / "model.py")

    runs = {
        name: mllib.train(model, evaluate=True, runtime=name, seed=3, echo=lambda _chunk: None)
        for name in ("process", "docker")
    }

    assert {name: run.status for name, run in runs.items()} == {
        "process": "succeeded",
        "docker": "succeeded",
    }
    process, docker = (outcome(root, runs[name].id) for name in ("process", "docker"))
    assert docker["params"] == process["params"]
    assert docker["series"] == process["series"] and process["series"]
    assert docker["eval"] == process["eval"] and process["eval"]
    assert docker["model"] == process["model"]


def test_probe_model_is_identical_under_both_runtimes(
    tmp_path: Path, image_repository: str
) -> None:
    """The contract's probe model, whose pickle holds data read through a data mount."""
    project = make_project(
        tmp_path,
        RuntimeUnderTest("docker", lambda run: [], {"image_repository": image_repository}),
    )

    runs = [project.train(runtime=name) for name in ("process", "docker")]

    process, docker = (outcome(project.root, run.id) for run in runs)
    assert [run.status for run in runs] == ["succeeded", "succeeded"]
    assert docker == process

"""The Docker image on the submitting machine's Python minor version: a run submitted from
another minor version than the base image's (Debian's 3.11) gets an image with this host's
Python of that version copied in, where the host has a self-contained one (here pyenv's);
otherwise the image keeps the base's Python and the build says so. Real engine, real builds."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mllib.project import Project as MllibProject
from mllib.runtime.env_plan import plan_environment
from mllib.runtime.images import ensure_image, plan_image
from tests.runtime.pythons import other_minor_python

if TYPE_CHECKING:
    from docker import DockerClient


@pytest.fixture
def project(tmp_path: Path, image_repository: str) -> MllibProject:
    (tmp_path / "mllib.toml").write_text(f'[runtime]\nimage_repository = "{image_repository}"\n')
    return MllibProject.find(tmp_path)


def test_an_image_gets_the_submitters_python_minor_version_from_this_host(
    project: MllibProject, docker_client: DockerClient
) -> None:
    version = other_minor_python()
    if version is None:
        pytest.skip("this host has no Python 3.11+ of another minor version than this one")
    minor = ".".join(version.split(".")[:2])
    plan = plan_environment(project.root, project.config)
    submitted = dataclasses.replace(plan, python=f"{minor}.99")  # the submitter's, another micro
    lines: list[str] = []

    tag = ensure_image(
        docker_client, project.root, project.config, env=submitted, progress=lines.append
    )
    again = plan_image(docker_client, project.root, project.config, env=submitted)
    output = docker_client.containers.run(
        tag,
        ["python", "-c", "import platform, cloudpickle, mllib; print(platform.python_version())"],
        remove=True,
    )

    assert output.decode().strip() == version
    assert docker_client.images.get(tag).labels["org.mllib.python"] == version
    said = "\n".join(lines)
    assert f"Python {version} from this host" in said
    assert "note:" not in said
    assert again.tag == tag and again.python is not None  # built once, found again


def test_without_a_python_of_that_version_the_image_keeps_its_own_and_says_so(
    project: MllibProject, docker_client: DockerClient
) -> None:
    plan = plan_environment(project.root, project.config)
    base = docker_client.images.get(project.config.runtime.base_image)
    base_python = base.labels["org.mllib.python"]

    missing = plan_image(
        docker_client,
        project.root,
        project.config,
        env=dataclasses.replace(plan, python="3.99.1"),  # no host has it
    )
    same = plan_image(
        docker_client,
        project.root,
        project.config,
        env=dataclasses.replace(plan, python=f"{base_python.rsplit('.', 1)[0]}.99"),
    )

    assert missing.python is None
    assert missing.python_note == (
        f"the base image {project.config.runtime.base_image} has Python {base_python}, not 3.99 "
        "as the machine the run came from: pinned versions may not exist for it, results can "
        "differ, and a model pickled under one minor version may not load under the other"
    )
    assert (same.python, same.python_note) == (None, None)

"""The registry-free base image: built once, runs Python, and child images can pip install."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from mllib.runtime.base_image import DEFAULT_TAG, build_base_image, build_pip_image

if TYPE_CHECKING:
    from docker import DockerClient


def run_in(client: DockerClient, image: str, command: list[str]) -> tuple[int, str]:
    """Run a command in a fresh container and return (exit code, output); always remove it."""
    container = client.containers.run(image, command, detach=True)
    try:
        status = container.wait(timeout=120)["StatusCode"]
        return status, container.logs().decode()
    finally:
        container.remove(force=True)


@pytest.fixture(scope="module")
def base_image(docker_client: DockerClient) -> str:
    """The base image id, built here if the engine does not have it yet (about a minute)."""
    return build_base_image(DEFAULT_TAG)


@pytest.fixture
def child_tag(docker_client: DockerClient) -> Iterator[str]:
    """A unique tag for a throwaway child image, removed afterwards."""
    tag = f"mllib-test/pip-child:{uuid.uuid4().hex[:12]}"
    yield tag
    import docker.errors

    try:
        docker_client.images.remove(tag, force=True)
    except docker.errors.ImageNotFound:
        pass


def test_second_call_returns_the_same_image_at_once(
    docker_client: DockerClient, base_image: str
) -> None:
    before = docker_client.images.get(base_image).id
    again = build_base_image(DEFAULT_TAG)

    assert again == base_image
    # Each import makes a new image id: the same id means it was not built again.
    assert docker_client.images.get(base_image).id == before


def test_base_image_is_labelled(docker_client: DockerClient, base_image: str) -> None:
    labels = docker_client.images.get(base_image).labels

    assert labels["org.mllib.base"] == "1"
    assert labels["org.mllib.debian.suite"] == "bookworm"
    assert labels["org.mllib.python"].startswith("3.")


def test_container_runs_python(docker_client: DockerClient, base_image: str) -> None:
    status, output = run_in(
        docker_client, base_image, ["python3", "-c", "import sys; print(sys.version)"]
    )

    assert status == 0, output
    assert output.startswith("3."), output


def test_child_image_pip_installs_from_the_host_index(
    docker_client: DockerClient, base_image: str, child_tag: str
) -> None:
    image_id = build_pip_image(child_tag, ["cloudpickle"], base=DEFAULT_TAG)

    status, output = run_in(
        docker_client,
        image_id,
        ["python", "-c", "import cloudpickle, sys; print(sys.prefix, cloudpickle.__version__)"],
    )
    assert status == 0, output
    assert output.startswith("/opt/venv "), output

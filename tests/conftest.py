"""Fixtures shared by every test folder: a real Docker engine, and cleaning up what tests make."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from mllib.runtime.engine import DockerRuntimeError
from mllib.runtime.engine import docker_client as connect

if TYPE_CHECKING:
    from docker import DockerClient


def docker_unavailable(reason: str) -> None:
    """Fail under CI (CI=true), where an engine is required; skip elsewhere, saying why."""
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(f"{reason} (with CI=true this fails instead of skipping)")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[DockerClient]:
    """A docker SDK client for a reachable engine: fails under CI=true, skips otherwise."""
    try:
        client = connect(timeout=120)
        client.ping()
    except DockerRuntimeError as exc:
        docker_unavailable(str(exc))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def base_image(docker_client: DockerClient) -> str:
    """The offline base image's tag, built here if the engine lacks it (about a minute, once)."""
    from mllib.runtime.base_image import DEFAULT_TAG, build_base_image

    build_base_image(DEFAULT_TAG)
    return DEFAULT_TAG


@pytest.fixture(scope="session")
def image_repository(docker_client: DockerClient, base_image: str) -> Iterator[str]:
    """A repository name for project images unique to this test session; its images go at the end.

    Tests write it as `[runtime] image_repository`, so they never touch images of other sessions
    or of real projects (project images share the engine with everyone else).
    """
    repository = f"mllib-test-{uuid.uuid4().hex[:10]}/env"
    yield repository
    remove_images(docker_client, repository)


def remove_images(client: DockerClient, repository: str) -> None:
    """Remove the images tagged in `repository` and `repository-deps` (children first)."""
    import docker.errors

    for name in (repository, f"{repository}-deps"):
        for image in client.images.list(name=name):
            for tag in image.tags:
                try:
                    client.images.remove(tag, force=True)
                except docker.errors.NotFound:
                    pass

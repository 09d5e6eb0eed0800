"""Fixtures for runtime tests that need a real Docker engine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from mllib.runtime.base_image import BaseImageError
from mllib.runtime.base_image import docker_client as connect

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
    except BaseImageError as exc:
        docker_unavailable(str(exc))
    try:
        yield client
    finally:
        client.close()

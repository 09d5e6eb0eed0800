"""Fixtures for dataset tests: a project in a temporary folder and a loopback HTTP server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mllib.workspace import Workspace
from tests.datasets.fileserver import FileServer
from tests.datasets.helpers import write_config


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    write_config(root)
    return root


@pytest.fixture
def ws(project: Path) -> Iterator[Workspace]:
    workspace = Workspace.find(project)
    yield workspace
    if "registry" in workspace.__dict__:
        workspace.registry.close()


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as srv:
        yield srv

"""Where serving keeps its files: beside the registry, like run folders."""

from __future__ import annotations

from pathlib import Path

from mllib.workspace import Workspace

LOG_FILE = "server.log"  # in a deployment's folder: every process of its server appends here


def serving_dir(ws: Workspace) -> Path:
    return ws.project.registry_path.parent / "serving"


def bundles_dir(ws: Workspace) -> Path:
    """Materialized model + code snapshots, one folder per artifact, shared by servers."""
    return serving_dir(ws) / "bundles"


def deployment_dir(ws: Workspace, deployment_id: str) -> Path:
    """A deployment's folder: its server's spec, log (LOG_FILE), status.json and metrics."""
    return serving_dir(ws) / "deployments" / deployment_id

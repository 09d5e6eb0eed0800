"""Copying a run's stored artifacts and model back out into a folder."""

from __future__ import annotations

from pathlib import Path

from mllib.registry.artifacts import list_artifacts
from mllib.registry.runs import get_run
from mllib.store import materialize_tree
from mllib.store.trees import safe_relative
from mllib.workspace import Workspace


def export_artifacts(ws: Workspace, run_id: str, dest: Path) -> list[Path]:
    """Write every artifact of the run under `dest`; returns the paths written (a model as its folder)."""
    run = get_run(ws.registry, run_id)
    written = []
    for artifact in list_artifacts(ws.registry, run.id):
        target = dest / safe_relative(artifact["path"])
        if artifact["kind"] == "model":
            materialize_tree(ws.store, artifact["sha256"], target)
        else:
            ws.store.copy_to(artifact["sha256"], target)
        written.append(target)
    return written

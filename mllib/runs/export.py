"""Copying a run's stored artifacts and model back out into a folder."""

from __future__ import annotations

from pathlib import Path

from mllib.errors import UsageError
from mllib.registry.artifacts import list_artifacts
from mllib.registry.runs import get_run
from mllib.store import materialize_tree
from mllib.store.trees import read_tree, safe_relative
from mllib.workspace import Workspace


def export_artifacts(ws: Workspace, run_id: str, dest: Path, *, force: bool = False) -> list[Path]:
    """Write every artifact of the run under `dest`; returns the paths written (a model as its folder).

    Files already in `dest` are refused before anything is written, unless `force` overwrites them.
    """
    run = get_run(ws.registry, run_id)
    artifacts = [(a, dest / safe_relative(a["path"])) for a in list_artifacts(ws.registry, run.id)]
    if not force:
        _refuse_existing(dest, [path for a, target in artifacts for path in _files(ws, a, target)])
    written = []
    for artifact, target in artifacts:
        if artifact["kind"] == "model":
            materialize_tree(ws.store, artifact["sha256"], target)
        else:
            ws.store.copy_to(artifact["sha256"], target)
        written.append(target)
    return written


def _files(ws: Workspace, artifact: dict, target: Path) -> list[Path]:
    """The files exporting `artifact` to `target` writes."""
    if artifact["kind"] != "model":
        return [target]
    return [target / safe_relative(f.path) for f in read_tree(ws.store, artifact["sha256"]).files]


def _refuse_existing(dest: Path, paths: list[Path]) -> None:
    """A UsageError naming the files (or non-folders in their way) that `dest` already holds."""
    taken = []
    for path in paths:
        in_the_way = [p for p in (path, *path.parents) if p.is_relative_to(dest) and p != dest]
        taken += [p for p in in_the_way if p.exists() and (p == path or not p.is_dir())]
    if taken:
        shown = ", ".join(str(p) for p in sorted(set(taken))[:5])
        more = f" and {len(set(taken)) - 5} more" if len(set(taken)) > 5 else ""
        raise UsageError(
            f"{dest} already holds {shown}{more}",
            hint="Pass --force to overwrite them, or choose another --output folder.",
        )

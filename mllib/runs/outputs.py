"""Moving what a run produced (its model folder and artifact files) into the store and the registry."""

from __future__ import annotations

import shutil

from mllib.protocol.folder import RunFolder
from mllib.registry import Registry
from mllib.registry.artifacts import add_artifact
from mllib.store import BlobStore, put_tree
from mllib.store.trees import walk_files


def collect_outputs(
    registry: Registry, store: BlobStore, run_id: str, folder: RunFolder, with_model: bool
) -> str | None:
    """Store artifact files and (when `with_model`) the model folder; returns the model's tree hash."""
    artifacts = folder.artifact_dir
    if artifacts.is_dir():
        for rel in walk_files(artifacts):
            blob = store.put_file(artifacts / rel, move=True)
            add_artifact(
                registry, run_id, f"{RunFolder.ARTIFACTS}/{rel}", "file", blob.sha256, blob.size
            )
        shutil.rmtree(artifacts, ignore_errors=True)
    model_dir = folder.model_dir
    model_sha = None
    if with_model and model_dir.is_dir():
        tree = put_tree(store, model_dir, move=True)
        add_artifact(registry, run_id, RunFolder.MODEL, "model", tree.sha256, tree.size)
        model_sha = tree.sha256
    shutil.rmtree(model_dir, ignore_errors=True)
    return model_sha

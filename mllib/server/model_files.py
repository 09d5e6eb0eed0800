"""A model version's files, as the team server gives them to a client that deploys it (`mllib
deploy NAME:V --env E` with a server configured: mllib.client.model_fetch): what the version is
(its run, model file and class) and the two trees it is made of, its saved model and the code it
was trained with. Blobs are asked for one by one, by hash, and only those of the version's two
trees are answered: a version's files are the team's (as `mllib models show` is), nothing else
in the store is.

>>> describe(reg, "iris:2")["model_sha256"]  # doctest: +SKIP
'5f1c...'
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllib.errors import NotFoundError
from mllib.registry import models
from mllib.registry.runs import get_run
from mllib.server import evaluations
from mllib.store import read_tree

if TYPE_CHECKING:
    from mllib.registry import Registry
    from mllib.store import LocalBlobStore


def describe(reg: Registry, ref: str) -> dict[str, Any]:
    """The version `ref` (NAME, NAME:VERSION, NAME@ALIAS) names on the server now: its number,
    the run that made it, its model file and class, and its two trees' hashes."""
    version = evaluations.resolve(reg, ref)
    run = get_run(reg, version.run_id)
    if not run.code_hash:
        raise NotFoundError(f"{version.ref} has no code snapshot on the team server")
    return {
        "name": version.name,
        "version": version.version,
        "run_id": run.id,
        "model_sha256": version.sha256,
        "code_hash": run.code_hash,
        "model_file": run.model_file,
        "model_class": run.model_class,
        "user": run.user,
        "created_at": run.created_at,
        "ended_at": run.ended_at,
    }


def blob(reg: Registry, store: LocalBlobStore, name: str, number: int, sha256: str) -> Path:
    """Where blob `sha256` of version `number` of `name` is: one of its two trees' manifests, or
    a file of them (a NotFoundError for any other)."""
    version = models.get_version(reg, name, number)
    if version is None:
        raise NotFoundError(f"No version {number} of model {name!r} on the team server")
    trees = (version.sha256, get_run(reg, version.run_id).code_hash or "")
    if sha256 not in trees and not any(
        sha256 == entry.sha256 for tree in trees if tree for entry in read_tree(store, tree).files
    ):
        raise NotFoundError(f"No file {sha256[:80]!r} in {version.ref} on the team server")
    return store.path(sha256)

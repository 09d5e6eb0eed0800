"""What a server serves: a trained run's model and the code snapshot it was trained with.

`resolve` turns `MODEL`, `MODEL:VERSION` or a run id into a Servable; `materialize` writes its
model tree and code tree into a cache folder (whole, or not at all) that every server process
of that artifact loads from.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from mllib.errors import NotFoundError, UsageError
from mllib.registry.artifacts import model_artifact, model_version_of
from mllib.registry.runs import RunRecord, get_run
from mllib.serving.paths import bundles_dir
from mllib.store import materialize_tree
from mllib.workspace import Workspace

COMPLETE_MARK = ".complete"
MODEL_DIR = "model"
CODE_DIR = "code"


@dataclass(frozen=True)
class Servable:
    """A trained model version, with everything needed to load it again."""

    model: str
    version: int | None
    run_id: str
    model_sha256: str
    code_hash: str
    model_file: str  # relative to the code snapshot
    model_class: str

    @property
    def artifact(self) -> str:
        """The identity of what is served: the same bytes of model and code are the same artifact."""
        return f"{self.model_sha256}:{self.code_hash}"

    @property
    def label(self) -> str:
        return (
            f"{self.model} v{self.version}" if self.version else f"{self.model} (run {self.run_id})"
        )

    @property
    def ref(self) -> str:
        """How to name it on the command line."""
        return f"{self.model}:{self.version}" if self.version else self.run_id


def from_run(ws: Workspace, run: RunRecord) -> Servable:
    """The servable made by a successful training run."""
    if run.status != "succeeded" or not run.action.startswith("train"):
        raise UsageError(
            f"Run {run.id} is a {run.status} {run.action} run, not a successful training run",
            hint="Pick one from `mllib runs list --status succeeded`.",
        )
    artifact = model_artifact(ws.registry, run.id)
    if artifact is None:
        raise NotFoundError(f"Run {run.id} has no saved model")
    if not run.code_hash:
        raise NotFoundError(f"Run {run.id} has no code snapshot to load its model with")
    version = model_version_of(ws.registry, run.id)
    return Servable(
        model=run.model,
        version=version["version"] if version else None,
        run_id=run.id,
        model_sha256=artifact["sha256"],
        code_hash=run.code_hash,
        model_file=run.model_file or "model.py",
        model_class=run.model_class or run.model,
    )


def resolve(ws: Workspace, ref: str) -> Servable:
    """`MODEL` (its newest version), `MODEL:VERSION`, or a run id (or unique prefix)."""
    name, sep, version_text = ref.partition(":")
    if sep:
        try:
            version = int(version_text.lstrip("v"))
        except ValueError:
            raise UsageError(
                f"{ref!r}: the version after ':' must be a number", hint="For example: classifier:3"
            ) from None
        rows = ws.registry.query(
            "SELECT run_id FROM models WHERE name = ? AND version = ?", (name, version)
        )
        if not rows:
            raise NotFoundError(
                f"No version {version} of model {name!r}", hint=_versions_hint(ws, name)
            )
        return from_run(ws, get_run(ws.registry, rows[0]["run_id"]))
    rows = ws.registry.query(
        "SELECT run_id FROM models WHERE name = ? ORDER BY version DESC LIMIT 1", (ref,)
    )
    if rows:
        return from_run(ws, get_run(ws.registry, rows[0]["run_id"]))
    try:
        run = get_run(ws.registry, ref)
    except NotFoundError:
        raise NotFoundError(
            f"{ref!r} is neither a model name nor a run id in this registry",
            hint=_versions_hint(ws, None),
        ) from None
    return from_run(ws, run)


def _versions_hint(ws: Workspace, name: str | None) -> str:
    rows = ws.registry.query(
        "SELECT name, MAX(version) AS latest FROM models GROUP BY name ORDER BY name"
    )
    if not rows:
        return "Nothing is trained yet: `mllib train model.py` makes a model version."
    known = ", ".join(f"{r['name']} (v1..v{r['latest']})" for r in rows)
    return f"Models here: {known}. Give MODEL, MODEL:VERSION or a run id."


def materialize(ws: Workspace, servable: Servable) -> Path:
    """The cache folder holding `model/` and `code/` of `servable`, written once and reused."""
    folder = bundles_dir(ws) / f"{servable.model_sha256[:16]}-{servable.code_hash[:16]}"
    if (folder / COMPLETE_MARK).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        materialize_tree(ws.store, servable.model_sha256, tmp / MODEL_DIR)
        materialize_tree(ws.store, servable.code_hash, tmp / CODE_DIR)
        (tmp / COMPLETE_MARK).write_text(servable.artifact + "\n")
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished the same bundle first
            if not (folder / COMPLETE_MARK).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder

"""What a server serves, found and prepared: a trained run's model and the code snapshot it was
trained with, or a LitServe API's code.

`resolve` turns `MODEL`, `MODEL:VERSION`, `MODEL@ALIAS`, a run id or a model file into a
Servable; `materialize` writes its model tree and code tree into a cache folder (whole, or not
at all) that every server process of that artifact loads from; `server_spec` is the ServerSpec serving it under [serve]'s limits.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
from pathlib import Path
from typing import Any

from mllib.discovery import split_ref
from mllib.errors import NotFoundError, PolicyError
from mllib.registry.artifacts import model_artifact, model_version_of
from mllib.registry.runs import RunRecord
from mllib.runs.model_choice import ModelChoice, choose, choose_version
from mllib.runs.target import (
    PACKAGE,
    ModelTarget,
    check_servable,
    locate_model,
    require_servable,
)
from mllib.serving.control.package import package
from mllib.serving.control.paths import bundles_dir
from mllib.serving.control.settings import ServeSettings
from mllib.serving.spec import (
    CODE_DIR,
    LITAPI,
    MODEL,
    MODEL_DIR,
    Servable,
    ServerSpec,
    http_processes,
)
from mllib.store import materialize_tree
from mllib.terminal import Notify
from mllib.workspace import Workspace

COMPLETE_MARK = ".complete"


def from_run(ws: Workspace, run: RunRecord) -> Servable:
    """The servable made by a successful training run, or by recording a LitServe API's code
    (mllib.serving.control.package)."""
    check_servable(run)
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
        kind=LITAPI if run.action == PACKAGE else MODEL,
    )


def resolve(
    ws: Workspace,
    ref: str,
    *,
    best: str | None = None,
    notify: Notify | None = None,
    record: bool = True,
) -> Servable:
    """`MODEL` (its newest version), `MODEL:VERSION`, `MODEL@ALIAS`, `MODEL` with `best` (the
    version whose evaluation has the best value of that metric), or a run id (or unique prefix):
    mllib.runs.model_choice reads them all. A model file (`api.py:MyAPI`, `model.py`): a
    LitServe API's code as it is now (recorded as a version), else the newest version of its
    model; without `record`, only code already recorded as a version. `notify` hears which
    version a name chose."""
    if is_file_ref(ref) and best is None:
        return from_file(ref, notify=notify, record=record)
    chosen = choose_version(ws, ref, best=best, run_ids=True)
    if notify is not None and chosen.why:
        notify(chosen.line())
    return from_run(ws, chosen.run)


def is_file_ref(ref: str) -> bool:
    """Whether `ref` names a model file (`api.py`, `api.py:MyAPI`) rather than a model."""
    return split_ref(ref)[0].endswith(".py")


def from_file(ref: str, *, notify: Notify | None = None, record: bool = True) -> Servable:
    """What the model file `ref` serves (see `from_target`); without `record`, a PolicyError
    for a LitServe API whose code as it is now is no version yet."""
    target = locate_model(ref)
    servable = from_target(target, notify=notify, record=record)
    if servable is None:
        ref = shlex.quote(ref)
        raise PolicyError(
            f"The code of {target.info.ref} as it is now never went to staging, so it "
            "cannot go to prod",
            hint=f"Run, in order:\n  mllib deploy {ref} --env staging\n"
            f"  mllib loadtest --env staging\n  mllib deploy {ref} --env prod",
        )
    return servable


def from_target(
    target: ModelTarget,
    params: dict[str, Any] | None = None,
    *,
    notify: Notify | None = None,
    record: bool = True,
) -> Servable | None:
    """What a model file serves: a LitServe API's code as it is now (recorded as a version by
    mllib.serving.control.package; None without `record` when it is no version yet), or the
    newest version of its model (trained with `params`, when given)."""
    require_servable(target)
    if target.info.litapi:
        run = package(target, notify, record=record)
        return from_run(target.ws, run) if run is not None else None
    return from_run(target.ws, choose(target.ws, ModelChoice(), target, params, notify=notify).run)


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


def server_spec(
    servable: Servable,
    bundle: Path,
    serve: ServeSettings,
    *,
    inference: str,
    workers: int,
    api_servers: int,
    **fields: Any,
) -> ServerSpec:
    """The spec serving `servable` from its materialized `bundle`, with [serve]'s limits; `fields`
    are the rest of ServerSpec (where, for which environment and deployment)."""
    return ServerSpec(
        servable=servable,
        bundle_dir=str(bundle),
        inference=inference,
        workers=workers,
        api_servers=http_processes(inference, workers, api_servers),
        timeout_s=serve.timeout_s,
        max_body_bytes=int(serve.max_body_mb * 1e6),
        drain_s=serve.drain_s,
        restart_workers=serve.restart_workers,
        **fields,
    )

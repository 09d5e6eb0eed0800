"""A LitServe API served as it is: no training run, its code is the model.

`package` records the project's code snapshot as a version of the API's model (a run of action
"package" whose model artifact is the code tree), once per distinct code: serving or deploying
the same code again names the same version, so `mllib models list` shows it, a rollback or a
redeploy can name it, and the staging-before-prod gate holds for exactly the code that passed
staging (its artifact is that code).
"""

from __future__ import annotations

from mllib._version import __version__
from mllib.code_snapshot import snapshot
from mllib.identity import current_user
from mllib.registry.artifacts import add_artifact, model_version_of, register_model
from mllib.registry.runs import RunRecord, create_run, get_run, new_run_id, now
from mllib.runs.target import PACKAGE, ModelTarget, require_servable
from mllib.terminal import Notify

CODE_ARTIFACT = "code"  # the path of a package run's model artifact


def package(
    target: ModelTarget, notify: Notify | None = None, *, record: bool = True
) -> RunRecord | None:
    """The package run of `target`'s LitServe API with the project's code as it is now: the one
    already recorded for this code, else (with `record`; None without) a new one, and a new
    version of the model."""
    require_servable(target)
    ws = target.ws
    tree, _ = snapshot(ws.store, ws.project.root, ws.project.config)
    rows = ws.registry.query(
        "SELECT id FROM runs WHERE action = ? AND status = 'succeeded' AND model = ?"
        " AND model_class = ? AND model_file = ? AND code_hash = ? ORDER BY created_at DESC",
        (PACKAGE, target.name, target.info.class_name, target.rel_file, tree.sha256),
    )
    if rows:
        found = get_run(ws.registry, rows[0]["id"])
        if notify is not None:
            row = model_version_of(ws.registry, found.id)
            label = f"{found.model} v{row['version']}" if row else found.model
            notify(f"using {label} (run {found.id}): the code of {target.info.ref} as it is")
        return found
    if not record:
        return None
    stamp = now()
    run = RunRecord(
        id=new_run_id(),
        model=target.name,
        action=PACKAGE,
        status="succeeded",
        created_at=stamp,
        started_at=stamp,
        ended_at=stamp,
        model_class=target.info.class_name,
        model_file=target.rel_file,
        project_dir=str(ws.project.root),
        env_target="local",
        host="local",
        user=current_user(),
        code_hash=tree.sha256,
        mllib_version=__version__,
    )
    with ws.registry.transaction():
        create_run(ws.registry, run, {}, {})
        add_artifact(ws.registry, run.id, CODE_ARTIFACT, "model", tree.sha256, tree.size)
        version = register_model(ws.registry, target.name, run.id, tree.sha256)
    if notify is not None:
        notify(f"recorded the code of {target.info.ref} as {target.name} v{version} (run {run.id})")
    return run

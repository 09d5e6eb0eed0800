"""The Job a run's runtime executes: its folders, and the environment it gets (read now)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mllib import sentry_plugin
from mllib.errors import MllibError
from mllib.protocol.numeric_env import numeric_environment
from mllib.protocol.spec import RunSpec
from mllib.registry.runs import RunRecord
from mllib.runtime.base import Job
from mllib.runtime.data_paths import env_data_paths
from mllib.workspace import Workspace


def job_for(
    ws: Workspace, run: RunRecord, *, with_data: bool = True, spec: RunSpec | None = None
) -> Job:
    """The Job of `run`: folders and environment (env file values are read now); `spec`: its
    spec.json when the caller has read it already (else it is read here).

    The run's variables are the env file's, overridden by the real environment (for them and for
    the variables the model's params read with `env=`), as when the params were resolved.
    Datasets the run records are materialised (or found intact) and given both as variables
    (host paths, for the process runtime) and as data_mounts for runtimes that mount them; other
    variables naming files or folders outside the project become data mounts too. A remote
    run's datasets are left to its runtime (see mllib.datasets.binding.dataset_uses).
    """
    from mllib.datasets.binding import dataset_uses, materialize_uses

    folder = ws.run_folder(run)
    spec = spec or folder.spec_or_none()
    # A Ray cluster's workers read this machine's files (a shared filesystem), --remote or not.
    local = with_data and ((run.env_target or "local") == "local" or run.runtime == "ray")
    datasets = materialize_uses(ws, dataset_uses(ws, run.id)) if local else {}
    # The real environment beats the env file, in every runtime (containers see neither otherwise);
    # datasets given to the run beat both. The numeric variables (BLAS kernel, thread counts) go
    # to every runtime alike, so a container computes what a process computes.
    variables = {
        **ws.project.env_under_shell(run.env_target or "local"),
        **_variables(ws, run, spec),
        **{name: str(path) for name, path in datasets.items()},
    }
    env = {
        **numeric_environment(),
        **variables,
        **sentry_plugin.environment(ws.project, run.env_target or "local"),
        "MLLIB_RUN_ID": run.id,
        "MLLIB_RUN_TAGS": json.dumps(_report_tags(run)),
        "PYTHONHASHSEED": str(run.seed or 0),
    }
    code_dir = folder.code_dir(ws.project.root)
    return Job(
        run_id=run.id,
        run_dir=folder.path,
        code_dir=code_dir,
        work_dir=ws.project.root,
        env=env,
        data_mounts={**env_data_paths(variables, ws.project.root), **datasets},
        gpus=spec.gpus if spec else None,
        code_files=_code_files(ws, code_dir) if run.runtime == "ray" else None,
    )


def _code_files(ws: Workspace, code_dir: Path) -> list[str] | None:
    """The project's files a run's code snapshot holds (a runtime that copies the code copies
    those alone); None for a run's own stored snapshot, all of which is its code."""
    from mllib.code_snapshot import project_files

    if code_dir != ws.project.root:
        return None
    return project_files(code_dir, ws.project.config).paths


def _report_tags(run: RunRecord) -> dict[str, str | None]:
    """What the run's error reports are tagged with, besides its id (mllib.error_reports)."""
    agent = run.host if run.host not in (None, "local") else None
    return {"model": run.model, "runtime": run.runtime, "agent": agent}


def param_variables(ws: Workspace, run: RunRecord) -> dict[str, str]:
    """The real environment's values of the variables the model's params declare with `env=`
    (the run's spec lists them, as they were when the run was prepared)."""
    return _variables(ws, run, ws.run_folder(run).spec_or_none())


def _variables(ws: Workspace, run: RunRecord, spec: RunSpec | None) -> dict[str, str]:
    names = spec.param_env if spec is not None else None
    if names is None:  # a spec from an mllib that did not record them: read the model's source
        names = _declared_env(ws.run_folder(run).code_dir(ws.project.root), run)
    return {name: os.environ[name] for name in names if name in os.environ}


def _declared_env(code_dir: Path, run: RunRecord) -> list[str]:
    from mllib.discovery import find_model

    try:
        info = find_model(code_dir / (run.model_file or "model.py"), run.model_class)
    except MllibError:
        return []
    return [spec.env for spec in info.params.values() if spec.env]

"""One prediction from a trained run, computed by the worker in a child process (never in the CLI)."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from mllib.encoding import from_json, to_json_bytes
from mllib.errors import MllibError, UsageError
from mllib.protocol import events
from mllib.protocol.events import EventReader
from mllib.protocol.failure import EXIT_USER_ERROR, classify
from mllib.protocol.folder import RunFolder
from mllib.protocol.spec import RunSpec
from mllib.registry.artifacts import model_artifact
from mllib.registry.runs import RunRecord
from mllib.runs.job import job_for
from mllib.runs.prepare import PLANNED_RUNTIMES, write_env_plan
from mllib.runtime import get_runtime
from mllib.store import materialize_tree
from mllib.workspace import Workspace


def predict_with_run(
    ws: Workspace, run: RunRecord, request: Any, *, runtime: str = "process"
) -> Any:
    """Load `run`'s model with the code it was trained with in a worker, call predict(request),
    and return the decoded JSON result."""
    artifact = model_artifact(ws.registry, run.id)
    if artifact is None:
        raise MllibError(f"Run {run.id} has no saved model")
    ws.project.state_dir.mkdir(parents=True, exist_ok=True)
    folder = RunFolder(Path(tempfile.mkdtemp(prefix="predict-", dir=ws.project.state_dir)))
    try:
        spec = RunSpec(
            run_id=f"predict-{run.id}",
            actions=["predict"],
            model_file=run.model_file or "model.py",
            model_class=run.model_class or run.model,
            seed=run.seed or 0,
            input_model=RunFolder.INPUT_MODEL,
        )
        spec.write(folder.path)
        materialize_tree(ws.store, artifact["sha256"], folder.input_model_dir)
        if run.code_hash:  # the version's own code, as a server loads it (model.py may differ now)
            materialize_tree(ws.store, run.code_hash, folder.code_snapshot)
        folder.request_file.write_bytes(to_json_bytes(request))
        job = job_for(ws, run, with_data=False)  # predict reads its request, not datasets
        job.run_dir, job.run_id = folder.path, spec.run_id
        job.code_dir = folder.code_dir(ws.project.root)
        if runtime in PLANNED_RUNTIMES:  # what serving the model needs, not what training did
            write_env_plan(ws, folder, spec.actions, job.code_dir)
        handle = get_runtime(runtime).start(job)
        for chunk in handle.output():  # the model's own prints go to stderr; stdout is the answer
            sys.stderr.buffer.write(chunk)
        sys.stderr.flush()
        status = handle.wait()
        errors = [
            e for e in EventReader(folder.events_file).read() if e.get("type") == events.ERROR
        ]
        if errors and errors[-1].get("bad_request") and status.code == EXIT_USER_ERROR:
            raise UsageError(
                f"predict() refused the request: {errors[-1].get('message')}",
                hint="Change the request (--input) to what the model expects.",
            )
        outcome = classify(status, errors[-1] if errors else None, cancel_requested=False)
        if outcome.status != "succeeded":
            raise MllibError(f"predict() failed: {outcome.message}")
        return from_json(folder.prediction_file.read_bytes())
    finally:
        shutil.rmtree(folder.path, ignore_errors=True)

"""The local backend: runs on this machine, under mllib's supervisor, with the run's runtime.

The supervisor starts the worker through the run's runtime (process, docker), streams its output
to `output.log` and the terminal, tails its event stream into the registry, and gives the run its
final status once its outputs are stored. It is the CLI process while attached, or a background
process (`--detach`); everything a backend shares (signals, claiming, cancelling) is in
mllib.runs.backend.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mllib.errors import MllibError, UsageError
from mllib.protocol.failure import SYSTEM_ERROR, USER_ERROR, ExitStatus, Outcome, classify
from mllib.protocol.folder import RunFolder
from mllib.protocol.spec import RunSpec
from mllib.redaction import Redactor, secret_values
from mllib.registry.health import RegistryError
from mllib.registry.runs import RunRecord, finish_run, update_run
from mllib.runs.backend import Backend, StartFailed, Supervision
from mllib.runs.job import job_for
from mllib.runs.outputs import collect_outputs
from mllib.runs.progress import PrepareProgress
from mllib.runs.recorder import Recorder
from mllib.runs.threads import Task, spawn
from mllib.runtime import RUNTIMES, get_runtime
from mllib.runtime.base import Job, RunHandle
from mllib.runtime.processes import create_time, is_alive, kill_tree
from mllib.workspace import Workspace

POLL_S = 0.2
REAP_GRACE_S = 5.0  # for what a dead supervisor left running


@dataclass
class Worker:
    """A run's worker, started: its runtime's handle, and what follows its output and events."""

    job: Job
    handle: RunHandle
    progress: PrepareProgress
    recorder: Recorder
    pump: Task
    status: ExitStatus | None = None
    pid: int | None = None  # the worker's pid, as recorded


class LocalBackend(Backend[Worker]):
    """Runs of the local runtimes (process, docker): the worker runs on this machine."""

    name = "local"

    def _start(self, ctx: Supervision) -> Worker:
        run = ctx.run
        spec = ctx.folder.spec_or_none()  # read once: the job and the redactor read it
        try:
            job = job_for(ctx.ws, run, spec=spec)
        except MllibError as exc:
            raise StartFailed(
                Outcome("failed", SYSTEM_ERROR, f"could not prepare the run: {exc}")
            ) from exc
        progress = PrepareProgress(ctx.folder.log_file, show=ctx.echo is not None)
        job.progress = progress
        # read before the worker takes the command line's secrets from the run folder
        redactor = redactor_for(ctx.folder, job.code_dir, {**os.environ, **job.env}, spec)
        try:
            handle = get_runtime(run.runtime or "process").start(job)
        except MllibError as exc:
            progress.close()
            default = USER_ERROR if isinstance(exc, UsageError) else SYSTEM_ERROR
            message = f"the {run.runtime} runtime could not start: {exc}"
            raise StartFailed(
                Outcome("failed", getattr(exc, "failure_class", default), message)
            ) from exc
        pid = getattr(handle, "pid", None)
        self._started(ctx, worker_pid=pid, worker_ctime=create_time(pid) if pid else None)
        recorder = Recorder(ctx.ws.registry, run.id, ctx.folder.events_file)
        pump = spawn(_pump, ctx, handle, progress, redactor, name=f"pump-{run.id}")
        return Worker(job, handle, progress, recorder, pump, pid=pid)

    def _poll(self, ctx: Supervision, worker: Worker) -> bool:
        worker.status = worker.handle.wait(POLL_S)
        pid = getattr(worker.handle, "pid", None)
        try:
            if pid and pid != worker.pid:  # a runtime that prepares first knows it only now
                worker.pid = pid
                update_run(
                    ctx.ws.registry, ctx.run.id, worker_pid=pid, worker_ctime=create_time(pid)
                )
            worker.recorder.poll()
        except RegistryError:  # nothing could record what the worker does: stop it
            worker.handle.cancel(0)
            raise
        return worker.status is not None

    def _stop(self, ctx: Supervision, worker: Worker, grace_s: float) -> None:
        worker.handle.cancel(grace_s)

    def _finish(self, ctx: Supervision, worker: Worker, cancelled: bool) -> RunRecord:
        """Store what the run produced, then record its final status and model version together:
        a run is recorded as succeeded only when its outputs are stored whole."""
        worker.pump.join(timeout=10)
        worker.progress.close()
        worker.recorder.poll()
        assert worker.status is not None  # _poll said it ended
        outcome = classify(worker.status, worker.recorder.error, cancelled)
        try:
            model = collect_outputs(
                ctx.ws.registry, ctx.ws.store, ctx.run.id, ctx.folder, worker.recorder.model_saved
            )
        except Exception as exc:  # disk full, a read-only store, a file that vanished: say so
            model = None
            outcome = _not_collected(outcome, exc, ctx)
        return self._record(ctx, outcome, model=model)

    def _cancel_unsupervised(self, ws: Workspace, run: RunRecord) -> None:
        _stop_worker(ws, run)
        finish_run(ws.registry, run.id, "cancelled", None, "cancelled")

    def _orphaned(self, ws: Workspace, run: RunRecord) -> bool:
        """Fail the run as a system error and end its worker."""
        _stop_worker(ws, run)
        message = (
            f"the mllib process supervising this run (pid {run.supervisor_pid}) ended unexpectedly"
        )
        return finish_run(ws.registry, run.id, "failed", SYSTEM_ERROR, message)


def _pump(
    ctx: Supervision, handle: RunHandle, progress: PrepareProgress, redactor: Redactor
) -> None:
    stream = redactor.stream()  # no secret value reaches output.log or the terminal
    with open(ctx.folder.log_file, "ab") as log:
        for raw in itertools.chain(handle.output(), [None]):  # None: the end, flush what is held
            chunk = stream.feed(raw) if raw is not None else stream.flush()
            progress.close()  # the run's own output replaces the preparation spinner
            log.write(chunk)
            log.flush()
            ctx.show(chunk)


def _stop_worker(ws: Workspace, run: RunRecord) -> None:
    """End what a run whose supervisor is gone left running: its process tree, or its container
    (and the secret params a worker that never started did not take)."""
    ws.run_folder(run).discard_secret_params()
    if run.worker_pid and is_alive(run.worker_pid, run.worker_ctime):
        kill_tree(run.worker_pid, REAP_GRACE_S)
    if run.runtime in RUNTIMES:
        reap = getattr(get_runtime(run.runtime), "reap", None)  # optional: see Runtime
        if reap is not None:
            reap(run.id, REAP_GRACE_S)


def _not_collected(outcome: Outcome, exc: Exception, ctx: Supervision) -> Outcome:
    """The outcome of a run whose outputs could not be stored: a system error, unless the run had
    already failed or been cancelled (then that stays its outcome, with this as a note)."""
    note = f"the run's outputs could not be stored: {exc} (what was not stored is in {ctx.folder.path})"
    if outcome.status == "succeeded":
        return Outcome("failed", SYSTEM_ERROR, note)
    return Outcome(outcome.status, outcome.failure_class, f"{outcome.message}; {note}")


def redactor_for(
    folder: RunFolder, code_dir: Path, environ: Mapping[str, str], spec: RunSpec | None = None
) -> Redactor:
    """The redactor of a run about to start (its worker has not yet taken the command line's
    secrets from the run folder): the values its model's secret params may hold, the params
    read from its source, `environ` the run's environment; `spec` its spec.json (read here when
    not given)."""
    from mllib.discovery import find_model

    spec = spec or folder.read_spec()
    try:
        specs = find_model(code_dir / spec.model_file, spec.model_class).params
    except MllibError:  # the worker reports what is wrong with the model
        return Redactor()
    values = secret_values(
        specs, environ=environ, cli=folder.read_secret_params(), config=spec.config_params
    )
    return Redactor(values)

"""Supervising one run: start the worker through its runtime, stream and store its output, record its
events, and give it a final status. The same code runs attached (in the CLI process) or detached
(in a background process started by `--detach`); only where the output is echoed differs.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mllib.errors import MllibError, UsageError
from mllib.redaction import Redactor, for_run
from mllib.registry.artifacts import register_model
from mllib.registry.health import RegistryError
from mllib.registry.runs import RunRecord, claim_run, finish_run, get_run, now, update_run
from mllib.runs.events import EVENTS_FILE
from mllib.runs.failure import SYSTEM_ERROR, USER_ERROR, Outcome, classify
from mllib.runs.outputs import collect_outputs
from mllib.runs.progress import PrepareProgress
from mllib.runs.spec import SPEC_FILE, RunSpec, discard_secret_params
from mllib.runtime import get_runtime
from mllib.runtime.base import Job
from mllib.runtime.data_paths import env_data_paths
from mllib.runtime.processes import create_time
from mllib.workspace import Workspace

LOG_FILE = "output.log"
CODE_DIR = (
    "code"  # a materialized code snapshot, present when a rerun's code differs from the project's
)
POLL_S = 0.2


def job_for(ws: Workspace, run: RunRecord, *, with_data: bool = True) -> Job:
    """The Job a run's runtime executes: folders and environment (env file values are read now).

    The run's variables are the env file's, overridden by the real environment (for them and for
    the variables the model's params read with `env=`), as when the params were resolved.
    Datasets the run records are materialised (or found intact) and given both as variables
    (host paths, for the process runtime) and as data_mounts for runtimes that mount them; other
    variables naming files or folders outside the project become data mounts too. A remote
    run's datasets are left to its runtime (see mllib.datasets.binding.dataset_uses).
    """
    from mllib.datasets.binding import dataset_uses, materialize_uses

    run_dir = Path(run.run_dir or ws.run_dir(run.id))
    snapshot = run_dir / CODE_DIR
    code_dir = snapshot if snapshot.is_dir() else ws.project.root
    local = with_data and (run.env_target or "local") == "local"
    datasets = materialize_uses(ws, dataset_uses(ws, run.id)) if local else {}
    # The real environment beats the env file, in every runtime (containers see neither otherwise);
    # datasets given to the run beat both.
    variables = {
        **ws.project.env_under_shell(run.env_target or "local"),
        **param_variables(code_dir, run),
        **{name: str(path) for name, path in datasets.items()},
    }
    env = {**variables, "MLLIB_RUN_ID": run.id, "PYTHONHASHSEED": str(run.seed or 0)}
    return Job(
        run_id=run.id,
        run_dir=run_dir,
        code_dir=code_dir,
        work_dir=ws.project.root,
        env=env,
        data_mounts={**env_data_paths(variables, ws.project.root), **datasets},
        gpus=RunSpec.read(run_dir).gpus if (run_dir / SPEC_FILE).is_file() else None,
    )


def param_variables(code_dir: Path, run: RunRecord) -> dict[str, str]:
    """The real environment's values of the variables the model's params declare with `env=`."""
    from mllib.discovery import find_model

    try:
        info = find_model(code_dir / (run.model_file or "model.py"), run.model_class)
    except MllibError:
        return {}
    names = [spec.env for spec in info.params.values() if spec.env]
    return {name: os.environ[name] for name in names if name in os.environ}


class CancelFlag:
    """Set by SIGINT/SIGTERM/SIGHUP; a second signal asks to stop without a grace period."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.forced = threading.Event()

    def __call__(self, signum: int, frame: object) -> None:
        if self.requested.is_set():
            self.forced.set()
        self.requested.set()


@contextmanager
def cancel_on_signals(flag: CancelFlag) -> Iterator[None]:
    """While inside, SIGINT/SIGTERM/SIGHUP set `flag` instead of stopping the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, flag) for s in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def supervise(
    ws: Workspace,
    run_id: str,
    *,
    echo: Callable[[bytes], None] | None = None,
    cancel_grace_s: float | None = None,
    on_interrupt: Callable[[], str] | None = None,
) -> RunRecord:
    """Run `run_id` to its end through its backend (mllib.runs.backends) and return its final
    record. Ctrl-C or SIGTERM cancels it (a remote run asks `on_interrupt` whether to "detach"
    or "cancel")."""
    from mllib.runs.backends import backend_for

    run = get_run(ws.registry, run_id)
    return backend_for(run).supervise(
        ws, run, echo=echo, cancel_grace_s=cancel_grace_s, on_interrupt=on_interrupt
    )


def supervise_local(
    ws: Workspace,
    run: RunRecord,
    *,
    echo: Callable[[bytes], None] | None = None,
    cancel_grace_s: float | None = None,
) -> RunRecord:
    """The local backend's supervision: the run's runtime on this machine, followed to its end."""
    registry = ws.registry
    grace = (
        cancel_grace_s if cancel_grace_s is not None else ws.project.config.runtime.cancel_grace_s
    )
    flag = CancelFlag()
    try:
        with cancel_on_signals(flag):
            if not claim_run(registry, run.id, os.getpid(), create_time(os.getpid())):
                return get_run(registry, run.id)  # cancelled before this supervisor took over
            if flag.requested.is_set():
                finish_run(registry, run.id, "cancelled", None, "cancelled before it started")
                return get_run(registry, run.id)
            try:
                job = job_for(ws, run)
            except MllibError as exc:
                finish_run(
                    registry, run.id, "failed", SYSTEM_ERROR, f"could not prepare the run: {exc}"
                )
                return get_run(registry, run.id)
            progress = job.progress = PrepareProgress(job.run_dir / LOG_FILE, show=echo is not None)
            redactor = for_run(job.run_dir, job.code_dir, {**os.environ, **job.env})
            try:
                handle = get_runtime(run.runtime or "process").start(job)
            except MllibError as exc:
                progress.close()
                default = USER_ERROR if isinstance(exc, UsageError) else SYSTEM_ERROR
                finish_run(
                    registry,
                    run.id,
                    "failed",
                    getattr(exc, "failure_class", default),
                    f"the {run.runtime} runtime could not start: {exc}",
                )
                return get_run(registry, run.id)
            pid = getattr(handle, "pid", None)
            update_run(
                registry,
                run.id,
                status="running",
                started_at=now(),
                worker_pid=pid,
                worker_ctime=create_time(pid) if pid else None,
            )
            try:
                outcome = _follow(ws, run, job, handle, flag, grace, echo, progress, redactor)
            except RegistryError:  # nothing could record what the worker does: stop it
                handle.cancel(0)
                raise
            return _finish(ws, run, job.run_dir, outcome)
    finally:  # however the run ended, secret params given on its command line go with it
        discard_secret_params(Path(run.run_dir or ws.run_dir(run.id)))


def _follow(ws, run, job, handle, flag, grace, echo, progress, redactor) -> tuple[Outcome, bool]:
    from mllib.runs.recorder import Recorder

    recorder = Recorder(ws.registry, run.id, job.run_dir / EVENTS_FILE)
    pump = threading.Thread(
        target=_pump, args=(handle, job.run_dir / LOG_FILE, echo, progress, redactor), daemon=True
    )
    pump.start()
    cancelled = forced = False
    while True:
        status = handle.wait(POLL_S)
        recorder.poll()
        if status is not None:
            break
        if flag.requested.is_set() and not cancelled:
            cancelled, forced = True, flag.forced.is_set()
            handle.cancel(0 if forced else grace)
        elif flag.forced.is_set() and not forced:  # a second Ctrl-C: no more grace
            forced = True
            handle.cancel(0)
    pump.join(timeout=10)
    progress.close()
    recorder.poll()
    outcome = classify(status, recorder.error, cancelled)
    return outcome, recorder.model_saved


def _pump(
    handle,
    log_path: Path,
    echo: Callable[[bytes], None] | None,
    progress: PrepareProgress,
    redactor: Redactor,
) -> None:
    stream = redactor.stream()  # no secret value reaches output.log or the terminal
    with open(log_path, "ab") as log:
        for raw in itertools.chain(handle.output(), [None]):  # None: the end, flush what is held
            chunk = stream.feed(raw) if raw is not None else stream.flush()
            progress.close()  # the run's own output replaces the preparation spinner
            log.write(chunk)
            log.flush()
            if echo is not None:
                try:
                    echo(chunk)
                except (OSError, ValueError):  # the terminal went away; keep logging
                    echo = None


def _finish(
    ws: Workspace, run: RunRecord, run_dir: Path, result: tuple[Outcome, bool]
) -> RunRecord:
    """Store what the run produced, then record its final status and model version together: a
    run is recorded as succeeded only when its outputs are stored whole."""
    outcome, model_saved = result
    registry = ws.registry
    try:
        model_sha = collect_outputs(registry, ws.store, run.id, run_dir, with_model=model_saved)
    except Exception as exc:  # disk full, a read-only store, a file that vanished: say so
        model_sha = None
        outcome = _not_collected(outcome, exc, run_dir)
    with registry.transaction():
        finished = finish_run(
            registry, run.id, outcome.status, outcome.failure_class, outcome.message, phase=None
        )
        if finished and outcome.status == "succeeded" and model_sha:
            register_model(registry, run.model, run.id, model_sha)
    return get_run(registry, run.id)


def _not_collected(outcome: Outcome, exc: Exception, run_dir: Path) -> Outcome:
    """The outcome of a run whose outputs could not be stored: a system error, unless the run had
    already failed or been cancelled (then that stays its outcome, with this as a note)."""
    note = f"the run's outputs could not be stored: {exc} (what was not stored is in {run_dir})"
    if outcome.status == "succeeded":
        return Outcome("failed", SYSTEM_ERROR, note)
    return Outcome(outcome.status, outcome.failure_class, f"{outcome.message}; {note}")

"""The cluster backend: runs of a runtime that hands the worker to a cluster engine (Ray).

The local backend's steps (mllib.runs.local) supervise the run from here: the runtime submits
the worker as a job and the supervisor streams its log, records its events and stores its
outputs. What the cluster adds is that a job can be lost with its node or its head: an attempt
that ends in a system error (a killed worker, a lost job) is submitted again as a new job,
under the same `[retry]` policy as an agent's attempts (mllib.runs.retry). The queue and fair
share stay mllib's: the cluster only runs what it is given.

| attempt 1 fails (system error) | its events file is kept beside as events.attempt-1.jsonl,   |
|                                | the log says why, and after the policy's pause a new job    |
|                                | starts; metric points the retry logs again are kept once    |
| a user error, a cancel         | the run's outcome at once, never retried                     |
"""

from __future__ import annotations

from mllib.protocol.failure import classify
from mllib.registry.runs import RunRecord, update_run
from mllib.runs.backend import StartFailed, Supervision
from mllib.runs.local import LocalBackend, Worker
from mllib.runs.retry import RetryPolicy


class ClusterBackend(LocalBackend):
    """Runs of a cluster runtime (ray): the local backend's, with system errors retried."""

    name = "cluster"
    keeps_secret_params = True  # each attempt's worker takes them again

    def __init__(self) -> None:
        self._secret_params: dict[str, object] = {}

    def _start(self, ctx: Supervision) -> Worker:
        if not self._secret_params:  # the worker takes the file: kept here for a retry
            self._secret_params = ctx.folder.read_secret_params()
        worker = super()._start(ctx)
        update_run(ctx.ws.registry, ctx.run.id, attempt=ctx.record().attempt or 1)
        return worker

    def _poll(self, ctx: Supervision, worker: Worker) -> bool:
        if not super()._poll(ctx, worker):
            return False
        if ctx.flag.requested.is_set():
            return True
        return not self._retried(ctx, worker)

    def _retried(self, ctx: Supervision, worker: Worker) -> bool:
        """The attempt that just ended failed with a system error the policy retries: start the
        next one into `worker` (True), else leave the outcome to `_finish` (False)."""
        worker.pump.join(timeout=10)
        worker.recorder.poll()
        assert worker.status is not None
        outcome = classify(worker.status, worker.recorder.error, False)
        policy = RetryPolicy.from_config(ctx.ws.project.config)
        attempt = ctx.record().attempt or 1
        if not policy.retries(attempt, outcome.failure_class):
            return False
        pause = policy.pause_after(attempt)
        note = (
            f"\n--- mllib: attempt {attempt} of {policy.max_attempts} failed ({outcome.message}); "
            f"attempt {attempt + 1} starts in {pause:.0f} s ---\n"
        ).encode()
        with open(ctx.folder.log_file, "ab") as log:
            log.write(note)
        ctx.show(note)
        ctx.sleep(pause)
        if ctx.flag.requested.is_set():
            return False  # cancelled during the pause: _finish records it
        worker.progress.close()
        events = ctx.folder.events_file
        if events.exists():
            events.rename(events.with_name(f"events.attempt-{attempt}.jsonl"))
        update_run(ctx.ws.registry, ctx.run.id, attempt=attempt + 1)
        if self._secret_params:
            ctx.folder.write_secret_params(self._secret_params)
        try:
            fresh = super()._start(ctx)
        except StartFailed as failed:  # the run's outcome: _finish records it
            outcome = failed.outcome
            worker.recorder.error = {
                "failure_class": outcome.failure_class,
                "message": outcome.message,
            }
            return False
        vars(worker).update(vars(fresh))
        return True

    def _finish(self, ctx: Supervision, worker: Worker, cancelled: bool) -> RunRecord:
        record = super()._finish(ctx, worker, cancelled)
        self._secret_params = {}
        return record

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
| the next job cannot be started | (a system error: the head is not back) a failed attempt too: |
|                                | the next pause, then another, while the policy allows        |
| a user error, a cancel         | the run's outcome at once, never retried                     |

A job the cluster holds (Ray's PENDING: no free GPUs, its runtime_env being set up) leaves the
run `queued`, its phase saying the cluster's reason, until the job runs.
"""

from __future__ import annotations

import json
from typing import Any

from mllib.errors import NotFoundError
from mllib.protocol.failure import Outcome, classify
from mllib.registry.runs import RunRecord, get_run, now, update_run
from mllib.runs.backend import StartFailed, Supervision
from mllib.runs.local import LocalBackend, Worker
from mllib.runs.retry import RetryPolicy
from mllib.safetext import printable
from mllib.workspace import Workspace

WAITING = "waiting for the cluster to start its job"
ATTEMPTS_FILE = "attempts.json"  # in the run folder: each attempt's job, status and reason


class ClusterBackend(LocalBackend):
    """Runs of a cluster runtime (ray): the local backend's, with system errors retried."""

    name = "cluster"
    keeps_secret_params = True  # each attempt's worker takes them again

    def __init__(self) -> None:
        self._secret_params: dict[str, object] = {}
        self._waiting: str | None = None  # the phase recorded while the cluster holds the job

    def _started(self, ctx: Supervision, **fields: Any) -> None:
        """A job the cluster has yet to start is `queued`, its phase saying why (the cluster's
        own reason: no free GPUs...), until it runs (_follow_waiting)."""
        self._waiting = WAITING
        update_run(ctx.ws.registry, ctx.run.id, status="queued", phase=WAITING, **fields)

    def _follow_waiting(self, ctx: Supervision, worker: Worker) -> None:
        """Record the cluster's reason while it holds the job, and `running` once it runs."""
        reason = getattr(worker.handle, "waiting", None)
        if reason is not None:
            phase = f"{WAITING}: {reason}"
            if phase != self._waiting:
                update_run(ctx.ws.registry, ctx.run.id, status="queued", phase=phase)
                self._waiting = phase
        elif self._waiting is not None and worker.status is None:
            update_run(ctx.ws.registry, ctx.run.id, status="running", phase=None, started_at=now())
            self._waiting = None

    def _start(self, ctx: Supervision) -> Worker:
        if not self._secret_params:  # the worker takes the file: kept here for a retry
            self._secret_params = ctx.folder.read_secret_params()
        worker = super()._start(ctx)
        self._count_active(ctx, worker)
        attempt = ctx.record().attempt or 1
        update_run(ctx.ws.registry, ctx.run.id, attempt=attempt)
        self._note_attempt(ctx, attempt, worker)
        return worker

    @staticmethod
    def _count_active(ctx: Supervision, worker: Worker) -> None:
        """A held job counts the cluster's pending jobs of runs this registry does not know
        ended (`[ray] max_pending`): a cancelled run's job may stay PENDING on the cluster."""
        if hasattr(worker.handle, "counts"):
            registry = ctx.ws.registry

            def counts(run_id: str) -> bool:
                try:
                    return not get_run(registry, run_id).finished
                except NotFoundError:  # another project's: it counts
                    return True

            worker.handle.counts = counts

    def attempts(self, ws: Workspace, run: RunRecord) -> list[dict[str, Any]]:
        """Each attempt's job ("agent": where it ran), status and reason, for `runs show`."""
        try:
            found: list[dict[str, Any]] = json.loads(
                (ws.run_folder(run).path / ATTEMPTS_FILE).read_text(encoding="utf-8")
            )
        except (OSError, ValueError):
            return []
        return found

    def _note_attempt(
        self,
        ctx: Supervision,
        attempt: int,
        worker: Worker | None,
        ended: Outcome | None = None,
        *,
        not_started: bool = False,
    ) -> None:
        """Record attempt `attempt` as begun on `worker`'s job (or `not_started`: no job), or
        as `ended`."""
        found = self.attempts(ctx.ws, ctx.run)
        if ended is None:
            job = worker.handle.ident if worker is not None and not not_started else "(no job)"
            found.append(
                {"attempt": attempt, "agent": job, "status": "running",
                 "failure_class": None, "reason": None, "started_at": now(), "ended_at": None}
            )  # fmt: skip
        elif found and found[-1]["attempt"] == attempt:
            found[-1].update(
                status=ended.status,
                failure_class=ended.failure_class,
                reason=ended.message,
                ended_at=now(),
            )
        (ctx.folder.path / ATTEMPTS_FILE).write_text(json.dumps(found), encoding="utf-8")

    def _poll(self, ctx: Supervision, worker: Worker) -> bool:
        ended = super()._poll(ctx, worker)
        self._follow_waiting(ctx, worker)
        if not ended:
            return False
        if ctx.flag.requested.is_set():
            return True
        return not self._retried(ctx, worker)

    def _retried(self, ctx: Supervision, worker: Worker) -> bool:
        """The attempt that just ended failed with a system error the policy retries: start the
        next one into `worker` (True), else leave the outcome to `_finish` (False). A next
        attempt that cannot start for a system error (the cluster's head is not back yet) is
        a failed attempt too, and the policy's next pause follows it."""
        worker.pump.join(timeout=10)
        worker.recorder.poll()
        assert worker.status is not None
        outcome = classify(worker.status, worker.recorder.error, False)
        policy = RetryPolicy.from_config(ctx.ws.project.config)
        attempt = ctx.record().attempt or 1
        worker.progress.close()
        while policy.retries(attempt, outcome.failure_class):
            self._note_attempt(ctx, attempt, None, outcome)
            pause = policy.pause_after(attempt)
            note = (
                f"\n--- mllib: attempt {attempt} of {policy.max_attempts} failed "
                f"({printable(outcome.message)}); attempt {attempt + 1} starts in {pause:.0f} s "
                "---\n"
            ).encode()
            with open(ctx.folder.log_file, "ab") as log:
                log.write(note)
            ctx.show(note)
            ctx.sleep(pause)
            if ctx.flag.requested.is_set():
                return False  # cancelled during the pause: _finish records it
            events = ctx.folder.events_file
            if events.exists():
                events.rename(events.with_name(f"events.attempt-{attempt}.jsonl"))
            attempt += 1
            update_run(ctx.ws.registry, ctx.run.id, attempt=attempt)
            if self._secret_params:
                ctx.folder.write_secret_params(self._secret_params)
            try:
                fresh = super()._start(ctx)
            except StartFailed as failed:  # retried while the policy allows, else the outcome
                outcome = failed.outcome
                worker.recorder.error = {
                    "failure_class": outcome.failure_class,
                    "message": outcome.message,
                }
                self._note_attempt(ctx, attempt, None, None, not_started=True)
                continue
            vars(worker).update(vars(fresh))
            self._note_attempt(ctx, attempt, worker)
            return True
        return False

    def _finish(self, ctx: Supervision, worker: Worker, cancelled: bool) -> RunRecord:
        record = super()._finish(ctx, worker, cancelled)
        self._secret_params = {}
        return record

    def _record(self, ctx: Supervision, outcome: Outcome, *, model: str | None = None) -> RunRecord:
        """The last attempt's end is noted before the run's, so a finished run shows it."""
        self._note_attempt(ctx, ctx.record().attempt or 1, None, outcome)
        return super()._record(ctx, outcome, model=model)

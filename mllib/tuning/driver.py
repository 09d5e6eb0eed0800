"""Driving a study: Optuna asks, mllib runs each trial as an ordinary run, Optuna is told.

mllib owns dispatch; Optuna owns sampling and pruning (its ask/tell interface). Each trial is a
run started through `mllib.runs.api.train` (the CLI's own entry point), so it is recorded, placed
and retried like any run, on any runtime or agent. Up to `parallel` trials run at once, each
supervised on a thread of this process. The main thread asks for trials, reads each running
trial's metric points from the registry as the supervisor ingests them (reporting the objective
metric to the pruner, and stopping a pruned trial through its CancelFlag, recorded as a cancelled
run of failure class `pruned`), and tells Optuna how each ended:

| the trial's run                     | Optuna is told                  | and then                        |
|-------------------------------------|---------------------------------|---------------------------------|
| succeeded                           | COMPLETE with the metric's value | a best value may be announced   |
| cancelled by the pruner             | PRUNED                          |                                 |
| failed with a user_error            | FAIL                            | the study stops when most fail  |
| failed with a system_error          | FAIL                            | its params are tried again      |
| cancelled by Ctrl-C (interrupted)   | FAIL                            | tried again on `tune resume`    |
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mllib.errors import MllibError, UsageError
from mllib.protocol.failure import SYSTEM_ERROR, USER_ERROR
from mllib.registry.metrics import get_eval_metrics, metric_summary, points_after
from mllib.registry.runs import RunRecord, get_run
from mllib.runs.backend import CancelFlag
from mllib.runs.threads import Task, spawn
from mllib.tuning.drivers import Presence, counts, has_room
from mllib.tuning.records import (
    PRUNED,
    StudyRecord,
    link_trial,
    mark_pruned,
    update_study,
)
from mllib.tuning.remote import RUN_ATTR, on_server
from mllib.tuning.storage import ask_in_turn, import_optuna, quiet_warnings

if TYPE_CHECKING:
    import optuna

    from mllib.runs.target import ModelTarget
    from mllib.tuning.space import Space

POLL_S = 0.1  # how often running trials' new metric points are read for the pruner
FULL_WAIT_S = 1.0  # a study other drivers fill is looked at again after this long
MOST_FAIL_AFTER = 3  # the study stops when more than half of at least this many trials failed


@dataclass
class Trial:
    """One trial this process drives: its Optuna trial, and the run that is it."""

    trial: optuna.Trial
    params: dict[str, Any]
    retry_of: int | None = None
    attempt: int = 1
    flag: CancelFlag = field(default_factory=CancelFlag)
    run_id: str | None = None
    record: RunRecord | None = None
    error: BaseException | None = None
    thread: Task | None = None  # None: adopted, its run followed through the registry
    seq: int = 0  # the last metric point read
    steps: set[int] = field(default_factory=set)  # steps reported to the pruner
    pruned: str | None = None  # why the pruner stopped it
    interrupted: bool = False

    @property
    def number(self) -> int:
        return int(self.trial.number)


@dataclass
class Tally:
    """What a study's progress shows: trials by outcome, and the best so far."""

    target: int
    complete: int = 0
    pruned: int = 0
    failed: int = 0  # failed for good (user errors; system errors retried are not counted)
    running: int = 0
    retried: int = 0
    best_value: float | None = None
    best_trial: int | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    last: str = ""  # one line about the last trial that ended

    @property
    def done(self) -> int:
        return self.complete + self.pruned + self.failed


class Progress:
    """What a study's driver tells whoever shows it; the default shows nothing."""

    def update(self, tally: Tally) -> None:
        """The tally changed (a trial started or ended)."""

    def note(self, message: str) -> None:
        """Something a person should know (which metric was found, a retry, a stop)."""


@dataclass
class Launch:
    """How trials are started: what `mllib train` would be given besides the params."""

    runtime: str | None = None
    remote: bool = False
    agent: str | None = None
    data: list[str] | None = None
    seed: int | None = None


class StudyStopped(MllibError):
    """The study stopped early (most trials failed, or the objective metric is missing)."""


class Driver:
    """Runs one study's trials until it has `target` finished trials, or its time is up."""

    def __init__(
        self,
        target: ModelTarget,
        study: StudyRecord,
        optuna_study: optuna.Study,
        space: Space,
        *,
        evaluate: bool,
        progress: Progress | None = None,
        max_attempts: int = 3,
        presence: Presence | None = None,
    ) -> None:
        self.target = target
        self.ws = target.ws
        self.study = study
        self.optuna = optuna_study
        self.space = space
        self.evaluate = evaluate
        self.progress = progress or Progress()
        self.max_attempts = max_attempts
        self.settings = study.settings
        self.launch = Launch(**study.launch)
        self.distributions = {name: dim.distribution() for name, dim in space.items()}
        self.running: dict[int, Trial] = {}
        self.ended: queue.Queue[Trial] = queue.Queue()
        self.tally = Tally(target=int(self.settings["trials"]))
        self.stop_reason: str | None = None
        self.presence = presence
        self._full_until = 0.0
        self._states = import_optuna().trial.TrialState
        self._count_existing()

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> Tally:
        """Drive the study to its end; Ctrl-C cancels the running trials (they are tried again
        on `tune resume`) and raises KeyboardInterrupt once they have stopped."""
        timeout_s = self.settings.get("timeout_s")
        deadline = None if timeout_s is None else time.monotonic() + float(timeout_s)
        try:
            while True:
                while self._may_start(deadline):
                    item = self._ask()
                    if item is None:  # other drivers' trials fill the study for now
                        self._full_until = time.monotonic() + FULL_WAIT_S
                        break
                    self._start(item)
                if not self.running:
                    break
                self._wait()
        except KeyboardInterrupt:
            self._interrupt()
            raise
        if self.stop_reason is not None:
            raise StudyStopped(
                f"Study {self.study.name} stopped: {self.stop_reason}",
                hint=f"Its trials: mllib tune show {self.study.name}",
            )
        return self.tally

    def adopt(self, trial: optuna.Trial, run: RunRecord, retry_of: int | None) -> None:
        """Follow a trial whose run was started by an earlier `mllib tune` and still runs (on an
        agent): it is waited for and told like the others."""
        item = Trial(trial, dict(trial.params), retry_of, run_id=run.id, record=None)
        if self.presence is not None:  # this driver tells how it ends now
            self.presence.claim(trial)
        self.running[item.number] = item
        self.tally.running += 1

    def settle(self, trial: optuna.Trial, run: RunRecord | None, retry_of: int | None) -> None:
        """Tell Optuna how a trial of an earlier `mllib tune` ended, from its run (None: the
        process died before the run was recorded): nothing that finished is lost."""
        item = Trial(trial, dict(trial.params), retry_of, run_id=run.id if run else None)
        item.record = run
        if run is None:
            item.error = MllibError("mllib tune stopped before the trial's run was recorded")
        self._end(item)

    def _may_start(self, deadline: float | None) -> bool:
        if self.stop_reason is not None or len(self.running) >= int(self.settings["parallel"]):
            return False
        if self.running and time.monotonic() < self._full_until:
            return False
        if deadline is not None and time.monotonic() >= deadline:
            return False
        return self.tally.done + self.tally.running < self.tally.target

    def _wait(self) -> None:
        """Until a trial ends or POLL_S passes; then report new metric points to the pruner."""
        try:
            item = self.ended.get(timeout=POLL_S)
        except queue.Empty:
            item = None
        while item is not None:
            self._end(item)
            try:
                item = self.ended.get_nowait()
            except queue.Empty:
                item = None
        for item in list(self.running.values()):
            if item.thread is None:  # adopted: its run is followed through the registry
                record = get_run(self.ws.registry, item.run_id or "")
                if record.finished:
                    item.record = record
                    self._end(item)
                    continue
            self._report(item)

    # -- one trial --------------------------------------------------------------------------
    def _ask(self) -> Trial | None:
        """The next trial (a retry waiting first); None when drivers on other machines fill
        the study (a server-kept one, mllib.tuning.drivers)."""
        with quiet_warnings():
            trial = ask_in_turn(self.optuna, self.distributions, has_room(self.tally.target))
        if trial is None:
            return None
        if self.presence is not None:
            self.presence.claim(trial)
        attrs = trial.user_attrs
        return Trial(
            trial,
            dict(trial.params),
            attrs.get("retry_of"),
            attempt=int(attrs.get("attempt", 1)),
        )

    def _start(self, item: Trial) -> None:
        self.running[item.number] = item
        self.tally.running += 1
        item.thread = spawn(self._run_trial, item, name=f"trial-{item.number}")
        self.progress.update(self.tally)

    def _run_trial(self, item: Trial) -> None:
        """The trial's run, from start to end (on the trial's own thread)."""
        from mllib.runs import api

        def prepared(record: RunRecord) -> None:
            item.run_id = record.id
            link_trial(self.ws.registry, self.study.name, item.number, record.id, item.retry_of)
            if on_server(self.study):  # other machines find the trial's run from the journal
                item.trial.set_user_attr(RUN_ATTR, record.id)

        try:
            item.record = api.train(
                params={**self.study.fixed, **item.params},
                evaluate=self.evaluate,
                runtime=self.launch.runtime,
                remote=self.launch.remote,
                agent=self.launch.agent,
                seed=self.launch.seed,
                data=self.launch.data,
                echo=None,
                target=self.target,
                on_prepared=prepared,
                flag=item.flag,
            )
        except BaseException as exc:  # told to Optuna as a failed trial, by the main thread
            item.error = exc
        finally:
            self.ended.put(item)

    def _report(self, item: Trial, *, final: bool = False) -> None:
        """Give the pruner the objective metric's new points; stop the trial when it says so
        (`final`: the run has ended, its last points are recorded for the pruner's medians)."""
        if item.run_id is None or item.pruned is not None or self.settings["pruner"] == "none":
            return  # no pruner: nothing reads intermediate values (each report is a journal write)
        metric = self.study.metric
        fresh = False
        for seq, name, step, value in points_after(self.ws.registry, item.run_id, item.seq):
            item.seq = seq
            if name != metric or value is None or step in item.steps:
                continue
            item.steps.add(step)
            with quiet_warnings():
                item.trial.report(value, step)
            fresh = True
            last = (step, value)
        if not fresh or final:
            return
        with quiet_warnings():
            prune = item.trial.should_prune()
        if prune:
            step, value = last
            item.pruned = (
                f"pruned by study {self.study.name} ({self.settings['pruner']} pruner) at step "
                f"{step}: {metric}={_fmt(value)}"
            )
            item.flag.request()
            if item.thread is None and item.run_id:  # adopted: cancel it where it runs
                threading.Thread(target=self._cancel_run, args=(item.run_id,), daemon=True).start()

    def _cancel_run(self, run_id: str) -> None:
        from mllib.runs.control import cancel
        from mllib.workspace import Workspace

        cancel(Workspace(self.ws.project), run_id)

    def _end(self, item: Trial) -> None:
        """Tell Optuna how the trial ended, and count it."""
        if self.running.pop(item.number, None) is not None:
            self.tally.running -= 1
        states = self._states
        record = item.record
        if record is None and item.run_id is not None:
            record = get_run(self.ws.registry, item.run_id)
        if record is None or item.error is not None:
            self._fail(item, _error_text(item.error), retry=not isinstance(item.error, UsageError))
            if isinstance(item.error, UsageError):
                self._stop(f"trial {item.number} could not start: {item.error.message}")
        elif record.status == "succeeded":
            self._report(item, final=True)
            value = self._objective(record)
            if value is None:
                self._tell(item, states.FAIL)
                self.tally.failed += 1
            else:
                self._tell(item, states.COMPLETE, value)
                self.tally.complete += 1
                self._best(item, value)
        elif record.status == "cancelled" and item.pruned is not None:
            mark_pruned(self.ws.registry, record.id, item.pruned)
            self._tell(item, states.PRUNED)
            self.tally.pruned += 1
            self.tally.last = f"trial {item.number} {item.pruned.split(' (')[0]}"
        elif record.status == "cancelled" and record.failure_class == PRUNED:
            self._tell(item, states.PRUNED)  # pruned by an earlier mllib tune before it died
            self.tally.pruned += 1
        elif record.status == "cancelled":
            self._fail(item, "cancelled", retry=True, interrupted=True)
        elif record.failure_class == SYSTEM_ERROR:
            self._fail(item, f"system_error: {record.error}", retry=True)
        else:
            self._fail(item, f"{record.failure_class or USER_ERROR}: {record.error}", retry=False)
        self.progress.update(self.tally)

    def _objective(self, record: RunRecord) -> float | None:
        """The metric's value from a successful run: a key of evaluate()'s dict, else the last
        value it logged. The first trial to have it settles (and says) which it is; a run with
        neither stops the study."""
        metric = self.study.metric
        evals = get_eval_metrics(self.ws.registry, record.id)
        logged = metric_summary(self.ws.registry, record.id)
        if metric in evals:
            source, value = "evaluate", evals[metric]
        elif metric in logged:
            source, value = "logged", logged[metric]["last"]
        else:
            keys = ", ".join(evals) or "none"
            names = ", ".join(logged) or "none"
            self._stop(
                f"run {record.id} has no metric {metric!r}: evaluate() returned {keys}; "
                f"it logged {names}"
            )
            return None
        if self.study.metric_source != source:
            self.study.metric_source = source
            update_study(self.ws.registry, self.study.name, metric_source=source)
            where = (
                "a key of evaluate()'s dict"
                if source == "evaluate"
                else "a metric the model logs (its last value)"
            )
            self.progress.note(f"objective {metric}: {where}")
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return math.nan  # Optuna records a NaN objective as a failed trial
        return float(value)

    def _tell(self, item: Trial, state: Any, value: float | None = None) -> None:
        with quiet_warnings():  # the trial's run is in the registry (study_trials)
            if value is not None and math.isnan(value):
                self.optuna.tell(item.trial, state=self._states.FAIL)
                return
            self.optuna.tell(item.trial, value if value is not None else None, state=state)

    def _fail(self, item: Trial, why: str, *, retry: bool, interrupted: bool = False) -> None:
        """A failed trial: tried again (a new trial with the same params) when `retry` and it
        has attempts left, else counted as failed; most trials failing stops the study."""
        again = retry and (interrupted or item.attempt < self.max_attempts)
        with quiet_warnings():
            item.trial.set_user_attr("error", why[:500])
            if again:
                item.trial.set_user_attr("retried", True)
        self._tell(item, self._states.FAIL)
        self.tally.last = f"trial {item.number} failed: {why.splitlines()[0][:200]}"
        if again:
            with quiet_warnings():
                self.optuna.enqueue_trial(
                    item.params,
                    user_attrs={"retry_of": item.number, "attempt": item.attempt + 1},
                    skip_if_exists=False,
                )
            self.tally.retried += 1
            if not interrupted:
                self.progress.note(f"trial {item.number} failed ({why[:200]}); trying it again")
            return
        self.tally.failed += 1
        if self.tally.done >= MOST_FAIL_AFTER and self.tally.failed * 2 > self.tally.done:
            self._stop(
                f"most trials failed ({self.tally.failed} of {self.tally.done}); the last: {why}"
            )

    def _best(self, item: Trial, value: float) -> None:
        tally = self.tally
        better = tally.best_value is None or (
            value < tally.best_value
            if self.study.direction == "minimize"
            else value > tally.best_value
        )
        tally.last = f"trial {item.number}: {self.study.metric}={_fmt(value)}"
        if better:
            tally.best_value, tally.best_trial, tally.best_params = value, item.number, item.params

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.progress.note(f"stopping: {reason}")

    def _count_existing(self) -> None:
        """Count what an earlier `mllib tune` of this study finished (a resumed study)."""
        states = self._states
        for frozen in self.optuna.get_trials(deepcopy=False):
            if frozen.number in self.running:
                continue
            if frozen.state == states.COMPLETE:
                self.tally.complete += 1
                value = frozen.value
                if value is not None:
                    self._best_frozen(frozen.number, value, frozen.params)
            elif frozen.state == states.PRUNED:
                self.tally.pruned += 1
            elif frozen.state == states.FAIL and counts(frozen):
                self.tally.failed += 1

    def _best_frozen(self, number: int, value: float, params: dict[str, Any]) -> None:
        tally = self.tally
        if tally.best_value is None or (
            value < tally.best_value
            if self.study.direction == "minimize"
            else value > tally.best_value
        ):
            tally.best_value, tally.best_trial, tally.best_params = value, number, params

    def _interrupt(self) -> None:
        """Ctrl-C: cancel every running trial (a second Ctrl-C skips their grace period), wait for
        them, and tell Optuna they failed, to be tried again on `tune resume`."""
        for item in self.running.values():
            item.interrupted = True
            item.flag.request()
        while self.running:
            try:
                item = self.ended.get(timeout=POLL_S)
            except KeyboardInterrupt:
                for other in self.running.values():
                    other.flag.request()  # the second request: no grace period
                continue
            except queue.Empty:
                for other in list(self.running.values()):
                    if other.thread is None:  # adopted: it goes on where it runs
                        self.running.pop(other.number)
                continue
            self._end(item)


def _error_text(error: BaseException | None) -> str:
    if error is None:
        return "mllib tune stopped before the trial's run was recorded"
    if isinstance(error, MllibError):
        return error.message
    return f"{type(error).__name__}: {error}"


def _fmt(value: float) -> str:
    from mllib.display import fmt_value

    return str(fmt_value(value))

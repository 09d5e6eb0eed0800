"""Run a schedule: evaluate the version its name means now, record it, alert when a gate breaks.

`NAME@prod` (`NAME@staging`) means the version deployed in that environment now, unless the model
has an alias of that name (an alias is what a user set; it wins). Any other name is resolved as
`mllib evaluate --model` resolves it. The evaluation is a run like any `mllib evaluate`: it gets
the newest version of each dataset named without `@VERSION`. Each run of a schedule is recorded
with the deployment serving the version (schedule_runs), and when a `--fail-under` gate breaks
the schedule alerts three ways: the command's exit status, the metrics file Prometheus reads
(mllib.schedules.metrics) and, with a Sentry DSN configured, a Sentry event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mllib import error_reports
from mllib.errors import MllibError, NotFoundError
from mllib.periods import every_seconds
from mllib.registry import models
from mllib.registry.runs import RunRecord
from mllib.runs.gates import ALERT_CLASS, alert
from mllib.runs.model_choice import Chosen, choose_version, parse_ref
from mllib.schedules import metrics, records
from mllib.schedules.records import Schedule
from mllib.workspace import Workspace

BREACHED = "breached"  # the run succeeded, and a gate broke
ERROR = "error"  # the run could not start (no deployment, no such model or dataset...)


@dataclass(frozen=True)
class Resolved:
    """The version a schedule evaluates this time, and the deployment serving it (if any)."""

    chosen: Chosen
    deployment_id: str | None = None
    env: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.chosen.model}:{self.chosen.version}"


@dataclass
class Outcome:
    """What one run of a schedule did."""

    schedule: Schedule
    run: RunRecord | None = None
    resolved: Resolved | None = None
    eval_metrics: dict[str, Any] = field(default_factory=dict)
    breaches: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def status(self) -> str:
        if self.run is None:
            return ERROR
        return BREACHED if self.run.status == "succeeded" and self.breaches else self.run.status

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def resolve(ws: Workspace, schedule: Schedule) -> Resolved:
    """The version `schedule` names now (see the module's docstring)."""
    from mllib.serving.control import records as deployments
    from mllib.serving.control.deploy import reconcile
    from mllib.serving.control.settings import ENVS

    reconcile(ws)  # a server that died serves nothing
    parsed = parse_ref(schedule.model_ref)
    env = parsed.alias if parsed.alias in ENVS and not schedule.best else None
    if env and models.alias_version(ws.registry, parsed.name, env) is None:
        live = [d for d in deployments.running(ws.registry, env) if d.state == "live"]
        serving = next((d for d in reversed(live) if d.model == parsed.name), None)
        if serving is None or serving.version is None:
            raise NotFoundError(
                f"{schedule.model_ref}: no version of {parsed.name} is deployed in {env} now",
                hint=f"Deploy one (`mllib deploy {parsed.name} --env {env}`), or name a version.",
            )
        chosen = choose_version(ws, f"{parsed.name}:{serving.version}")
        return Resolved(chosen, serving.id, env)
    chosen = choose_version(ws, schedule.model_ref, best=schedule.best)
    matching = [
        d
        for d in deployments.running(ws.registry)
        if d.model == chosen.model and d.version == chosen.version and d.state == "live"
    ]
    matching.sort(key=lambda d: d.env != "prod")  # prod's first
    first = matching[0] if matching else None
    return Resolved(chosen, first.id if first else None, first.env if first else None)


def create(ws: Workspace, model_ref: str, every: str, **options: Any) -> tuple[Schedule, Resolved]:
    """A new schedule evaluating `model_ref` `every` period (`options`: those of records.add);
    refused (nothing stored) when the name or a dataset means nothing now. Returns it with what
    it would evaluate now."""
    from mllib.datasets.binding import resolve_bindings

    every_seconds(every)
    resolve_bindings(ws, options.get("data"))
    draft = Schedule("", model_ref, every, 0, "", "", best=options.get("best"))
    resolved = resolve(ws, draft)
    schedule = records.add(ws.registry, model_ref, every, **options)
    return schedule, resolved


def run(ws: Workspace, schedule: Schedule, *, echo: Callable[[str], None] | None = None) -> Outcome:
    """Evaluate now what `schedule` names, record it and alert on a breach; never raises for a
    failure of the evaluation itself (the outcome says it)."""
    from mllib.runs import api
    from mllib.runs.gates import breaches
    from mllib.runs.target import target_of_run
    from mllib.runs.views import outcome as run_outcome

    result = Outcome(schedule)
    try:
        resolved = result.resolved = resolve(ws, schedule)
        target = target_of_run(ws, resolved.chosen.run)
        kwargs: dict[str, Any] = {"echo": echo} if echo is not None else {}
        result.run = api.evaluate(
            version=resolved.ref,
            target=target,
            data=schedule.data,
            runtime=schedule.runtime,
            notify=None,
            **kwargs,
        )
    except MllibError as exc:
        result.error = str(exc)
    if result.run is not None and result.run.status == "succeeded":
        result.eval_metrics = run_outcome(ws, result.run)["eval_metrics"]
        result.breaches = breaches(result.eval_metrics, schedule.gates)
    _record(ws, result)
    metrics.write(ws.registry)
    if not result.ok and (result.breaches or result.error):
        _report(ws, result)
    return result


def run_due(ws: Workspace, *, echo: Callable[[str], None] | None = None) -> list[Outcome]:
    """Run every schedule that is due (what the timer calls), each once even when two runners
    overlap."""
    return [
        run(ws, schedule, echo=echo)
        for schedule in records.due(ws.registry)
        if records.claim(ws.registry, schedule)
    ]


def _record(ws: Workspace, result: Outcome) -> None:
    resolved = result.resolved
    records.record_run(
        ws.registry,
        result.schedule.id,
        run_id=result.run.id if result.run else None,
        model=resolved.chosen.model if resolved else None,
        version=resolved.chosen.version if resolved else None,
        deployment_id=resolved.deployment_id if resolved else None,
        env=resolved.env if resolved else None,
        status=result.status,
        breaches=result.breaches,
        error=result.error,
    )


def _report(ws: Workspace, result: Outcome) -> None:
    """A Sentry event for a breach or a schedule that could not run (with a DSN configured): the
    run's own failures are the worker's to report."""
    resolved = result.resolved
    what = resolved.ref if resolved else result.schedule.model_ref
    where = f" ({resolved.env})" if resolved and resolved.env else ""
    problem = "; ".join(result.breaches) if result.breaches else (result.error or "")
    alert(
        ws.project,
        f"Scheduled evaluation of {what}{where}: {problem}",
        failure_class=ALERT_CLASS if result.breaches else error_reports.USER_ERROR,
        schedule=result.schedule.id,
        run_id=result.run.id if result.run else None,
        model=resolved.chosen.model if resolved else None,
        version=resolved.chosen.version if resolved else None,
        deployment=resolved.deployment_id if resolved else None,
        env=resolved.env if resolved else None,
    )

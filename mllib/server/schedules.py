"""Scheduled evaluations on the team server: the server, not a timer on someone's laptop, runs
them.

A schedule evaluates the version a model name means at each of its runs (`mllib evaluate
--model NAME@ALIAS --every 1d`: mllib.server.evaluations), or repeats one evaluation run its user
queued on the server (`mllib schedules add`; its template: the same code, model version, params
and resources, as `runs rerun` does), every period, each time on the newest version of every
dataset, except those its `data` pins with `@VERSION`. The server's ticker (`Ticker`, a thread
of `mllib server start`) queues each due schedule's run as its user's, through the same group
commit as any submission; a schedule is claimed by moving its next time on first, so a restart
or two tickers never queue one twice, and alerts on the runs that ended
(mllib.server.schedule_alerts). The `.env.remote` values the user gave are kept sealed
(mllib.server.sealed) and handed to each run's job, which drops them when the run ends.

>>> create(reg, who, "k3x9...", "1d", gates={"accuracy": 0.9}, data=[])  # doctest: +SKIP
{'id': 's5f0c2ab1', 'every': '1d', 'next_due_at': '2026-12-08T10:00:00.000000Z', ...}
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from mllib.datasets.catalog import get_version
from mllib.datasets.refs import DatasetRef, parse_binding
from mllib.errors import MllibError, NotFoundError, UsageError
from mllib.periods import every_seconds, next_time
from mllib.registry import Registry
from mllib.registry.metrics import get_eval_metrics
from mllib.registry.runs import get_run, iso, new_run_id, now
from mllib.runs.gates import breaches
from mllib.server import deployments, evaluations, sealed
from mllib.server.accounts import User, get_user
from mllib.server.periodic import Periodic, log

if TYPE_CHECKING:
    import sqlite_utils

    from mllib.server.commits import GroupCommit
    from mllib.server.context import ServerContext
    from mllib.server.settings import ServerHome
    from mllib.server.submit import Accepted

TICK_S = 5.0  # how often the ticker looks for due schedules
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


@cache
def migrations() -> sqlite_utils.Migrations:
    """The server's schedules tables (mllib.plugins.SERVER_MIGRATIONS)."""
    from mllib.registry.schema import new_set

    migrations_ = new_set("mllib.server.schedules")

    @migrations_(name="0001_server_schedules")
    def initial(db: sqlite_utils.Database) -> None:
        db.table("server_schedules").create(
            {
                "id": str,
                "user": str,
                "template_run_id": str,  # the evaluation repeated
                "every": str,  # as given: 1d
                "every_s": int,
                "gates": str,  # JSON {metric: threshold} (--fail-under)
                "data": str,  # JSON list of KEY=NAME[@VERSION] as given (@VERSION: pinned)
                "created_at": str,
                "next_due_at": str,
                "last_run_at": str,
            },
            pk="id",
            not_null={"user", "template_run_id", "every", "every_s", "created_at", "next_due_at"},
        )
        db.execute("CREATE INDEX server_schedules_due ON server_schedules (next_due_at)")
        db.table("server_schedule_runs").create(
            {"run_id": str, "schedule_id": str, "started_at": str},
            pk="run_id",
        )
        db.execute(
            "CREATE INDEX server_schedule_runs_of ON server_schedule_runs (schedule_id, started_at)"
        )

    @migrations_(name="0002_server_schedules_model_ref_and_alerts")
    def model_ref(db: sqlite_utils.Database) -> None:
        # NAME@ALIAS as given to `mllib evaluate --every`: resolved again at each run (NULL: a
        # schedule of `mllib schedules add`, repeating its template's version)
        db.table("server_schedules").add_column("model_ref", str)
        # why its last run could not be queued (NULL: it was)
        db.table("server_schedules").add_column("last_error", str)
        # when the run's end was checked for an alert (mllib.server.schedule_alerts); the runs
        # there before are not alerted
        db.table("server_schedule_runs").add_column("alerted_at", str)
        db.execute("UPDATE server_schedule_runs SET alerted_at = started_at")
        # the `.env.remote` values each run gets, sealed (mllib.server.sealed)
        db.table("server_schedules").add_column("sealed_env", str)

    @migrations_(name="0003_server_schedule_runs_deployment")
    def deployment(db: sqlite_utils.Database) -> None:
        # the deployment whose version the run evaluated (mllib.server.deployments), if any
        db.table("server_schedule_runs").add_column("deployment_id", str)

    return migrations_


def create_for_model(
    reg: Registry,
    who: User,
    commits: GroupCommit,
    ctx: ServerContext,
    model_ref: str,
    every: str,
    *,
    gates: dict[str, float] | None = None,
    data: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Evaluate the version `model_ref` names on the server every `every` (`mllib evaluate
    --model NAME@ALIAS --every 1d`): its first evaluation is queued now, and each later one
    evaluates the version the name means then. `env` (`.env.remote` values), sealed, is what
    each run gets. Nothing is stored when the name, a dataset or the period means nothing now."""
    row = _new_row(who, every, gates, data, model_ref=model_ref)
    evaluations.target(reg, model_ref)  # a usage error before anything is sealed or queued
    row["sealed_env"] = sealed.seal(ctx.home, env or {})
    key = f"schedule-{row['id']}-first"
    accepted, target = _queue(reg, commits, ctx, {**row, "template_run_id": ""}, key, env=env)
    row["template_run_id"] = accepted.run.id  # the first evaluation
    deployment = target.deployment if target else None
    _store(reg, row, deployment["id"] if deployment else None)
    return {
        **_public(row),
        "first_run_id": accepted.run.id,
        "version": target.version.ref if target else None,
        "deployment": deployment,
    }


def create(
    reg: Registry,
    who: User,
    run_id: str,
    every: str,
    *,
    gates: dict[str, float] | None = None,
    data: list[str] | None = None,
    env: dict[str, str] | None = None,
    home: ServerHome | None = None,
) -> dict[str, Any]:
    """Repeat the evaluation run `run_id` (the caller's) every `every`; its first repeat is due
    one period after now (the template is this period's evaluation). `env` (`.env.remote`
    values) is sealed with the key in `home`, and each repeat gets it."""
    from mllib.queue.jobs import get_job

    run = _own_run(reg, who, run_id)
    if "evaluate" not in run.action or get_job(reg, run.id) is None:
        raise UsageError(
            f"Run {run.id} is not an evaluation queued on this server",
            hint="Schedule an evaluation: mllib evaluate --model NAME --every 1d.",
        )
    for binding in data or []:
        parse_binding(binding)  # a usage error for a malformed one
    row = _new_row(who, every, gates, data, template_run_id=run.id)
    row["sealed_env"] = sealed.seal(home, env) if home is not None and env else None
    _store(reg, row)
    return _public(row)


def _store(reg: Registry, row: dict[str, Any], deployment_id: str | None = None) -> None:
    """Record a new schedule with its template as its first run (which evaluated the version
    deployment `deployment_id` serves, if any)."""
    first = {"run_id": row["template_run_id"], "schedule_id": row["id"]}
    if deployment_id is not None:
        first["deployment_id"] = deployment_id
    with reg.transaction():
        reg.db.table("server_schedules").insert(row)
        reg.db.table("server_schedule_runs").insert(first | {"started_at": row["created_at"]})


def _new_row(
    who: User,
    every: str,
    gates: dict[str, float] | None,
    data: list[str] | None,
    **fields: Any,
) -> dict[str, Any]:
    """A new schedule's row, its first repeat due one period from now."""
    every_s = every_seconds(every)
    created = now()
    return {
        "id": "s" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8)),
        "user": who.name,
        "every": every,
        "every_s": every_s,
        "gates": json.dumps(gates or {}),
        "data": json.dumps(list(data or [])),
        "created_at": created,
        "next_due_at": iso(_epoch(created) + every_s),
        "last_run_at": created,
        **fields,
    }


def list_schedules(reg: Registry, who: User, *, everyone: bool = False) -> list[dict[str, Any]]:
    """The caller's schedules (`everyone`, admins: all), oldest first, each with its last run."""
    sql, args = "SELECT * FROM server_schedules", []
    if not (everyone and who.admin):
        sql, args = sql + ' WHERE "user" = ?', [who.name]
    found = []
    for row in reg.query(sql + " ORDER BY created_at", args):
        runs = _runs(reg, row, limit=1)
        found.append({**_public(row), "last": runs[0] if runs else None})
    return found


def show(reg: Registry, who: User, schedule_id: str, limit: int = 20) -> dict[str, Any]:
    """One schedule with its latest runs (newest first): status, metrics, gates not passed."""
    row = _own(reg, who, schedule_id)
    return {**_public(row), "runs": _runs(reg, row, limit=limit)}


def remove(reg: Registry, who: User, schedule_id: str) -> dict[str, Any]:
    """Stop a schedule (its runs stay)."""
    row = _own(reg, who, schedule_id)
    with reg.transaction():
        reg.conn.execute("DELETE FROM server_schedule_runs WHERE schedule_id = ?", (row["id"],))
        reg.conn.execute("DELETE FROM server_schedules WHERE id = ?", (row["id"],))
    return _public(row)


def submission(
    reg: Registry,
    schedule: dict[str, Any],
    key: str,
    env: dict[str, str] | None = None,
    target: evaluations.Target | None = None,
) -> Any:
    """The run a schedule queues now (idempotency key `key`, variables `env`): its template
    again, on the newest version of each dataset the template read that `data` does not pin;
    or, for a model name, the evaluation of the version it means now (`target`, when resolved
    already)."""
    from mllib.server.submit import rerun_of

    body = {"run_id": new_run_id(), "idempotency_key": key, "env": env or {}}
    if schedule.get("model_ref"):  # the version the name means now
        target = target or evaluations.target(reg, schedule["model_ref"])
        return evaluations.evaluation(reg, target.version, evaluations.data_of(schedule), body)
    template = get_run(reg, schedule["template_run_id"])
    sub = rerun_of(reg, template, body)
    bindings = [parse_binding(b) for b in json.loads(schedule["data"] or "[]")]
    pinned = {env for env, ref in bindings if ref.version is not None}
    for binding in sub.datasets:
        if binding["env"] not in pinned:
            binding["version"] = get_version(reg, DatasetRef(binding["name"])).version
    return sub


def queue_now(
    reg: Registry, commits: GroupCommit, ctx: ServerContext, schedule: dict[str, Any], key: str
) -> Accepted:
    """Queue one run of `schedule` as its user's, and record it as the schedule's, with the
    deployment whose version it evaluates."""
    accepted, target = _queue(reg, commits, ctx, schedule, key)
    deployment = target.deployment if target else None
    with reg.transaction():
        reg.conn.execute(
            "INSERT INTO server_schedule_runs (run_id, schedule_id, started_at, deployment_id) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
            (accepted.run.id, schedule["id"], now(), deployment["id"] if deployment else None),
        )
    return accepted


def _queue(
    reg: Registry,
    commits: GroupCommit,
    ctx: ServerContext,
    schedule: dict[str, Any],
    key: str,
    env: dict[str, str] | None = None,
) -> tuple[Accepted, evaluations.Target | None]:
    """Queue the schedule's run with its variables (`env`, else its sealed ones): its job holds
    them until the run ends, as any submission's. With it, what its model name meant (None for
    a rerun of a template)."""
    user = get_user(reg, schedule["user"])
    limit = user.max_queued if user.max_queued is not None else ctx.settings.max_queued
    if env is None:
        env = sealed.unseal(ctx.home, schedule.get("sealed_env"))
    ref = schedule.get("model_ref")
    target = evaluations.target(reg, ref) if ref else None
    sub = submission(reg, schedule, key, env, target)
    return commits.submit(user, sub, limit), target


def run_now(
    reg: Registry, who: User, commits: GroupCommit, ctx: ServerContext, schedule_id: str
) -> Accepted:
    """Queue a schedule's run now (its next time stays as it was)."""
    row = _own(reg, who, schedule_id)
    return queue_now(reg, commits, ctx, row, f"schedule-{row['id']}-now-{new_run_id()}")


def tick(reg: Registry, commits: GroupCommit, ctx: ServerContext) -> list[Accepted]:
    """Queue a run of every schedule that is due, each claimed first (its next time moved on
    past now, skipping periods missed while the server was down)."""
    queued = []
    started = now()
    for row in reg.query(
        "SELECT * FROM server_schedules WHERE next_due_at <= ? ORDER BY next_due_at", (started,)
    ):
        due, at = _moment(row["next_due_at"]), _moment(started)
        following = iso(next_time(due, at, int(row["every_s"])).timestamp())
        with reg.transaction():
            claimed = reg.conn.execute(
                "UPDATE server_schedules SET next_due_at = ?, last_run_at = ? "
                "WHERE id = ? AND next_due_at = ?",
                (following, started, row["id"], row["next_due_at"]),
            ).rowcount
        if claimed == 1:  # the key names this due time: a retried tick makes no second run
            key = f"schedule-{row['id']}-{row['next_due_at']}"
            try:
                queued.append(queue_now(reg, commits, ctx, row, key))
            except Exception as exc:  # one schedule's failure stops no other
                _not_queued(reg, ctx, row, exc)
                continue
            _set_error(reg, row["id"], None)
    return queued


def _not_queued(reg: Registry, ctx: ServerContext, row: dict[str, Any], exc: Exception) -> None:
    """Record and report why a due schedule's run could not be queued."""
    from mllib.error_reports import USER_ERROR
    from mllib.server import schedule_alerts

    reason = exc.message if isinstance(exc, MllibError) else str(exc)  # one line, no hint
    log(f"schedule {row['id']}: its run could not be queued: {reason}")
    _set_error(reg, row["id"], reason)
    schedule_alerts.report(
        ctx,
        f"Scheduled evaluation {row['id']} could not run: {reason}",
        failure_class=USER_ERROR,
        schedule=row["id"],
        user=row["user"],
    )


def _set_error(reg: Registry, schedule_id: str, reason: str | None) -> None:
    with reg.transaction():
        reg.conn.execute(
            "UPDATE server_schedules SET last_error = ? WHERE id = ?", (reason, schedule_id)
        )


class Ticker(Periodic):
    """The thread of `mllib server start` that queues due schedules every TICK_S."""

    name, every_s = "schedules", TICK_S

    def __init__(self, ctx: ServerContext, commits: GroupCommit) -> None:
        self.ctx, self.commits = ctx, commits
        super().__init__()

    def step(self) -> None:
        from mllib.server import schedule_alerts

        with self.ctx.registry() as reg:
            tick(reg, self.commits, self.ctx)
            schedule_alerts.check(reg, self.ctx)


def _own_run(reg: Registry, who: User, run_id: str) -> Any:
    run = get_run(reg, run_id)
    if run.user != who.name and not who.admin:
        raise NotFoundError(
            f"No run {run_id!r} among yours", hint="List yours with `mllib runs list`."
        )
    return run


def _own(reg: Registry, who: User, schedule_id: str) -> dict[str, Any]:
    rows = reg.query("SELECT * FROM server_schedules WHERE id = ?", (schedule_id,))
    if not rows or (rows[0]["user"] != who.name and not who.admin):
        raise NotFoundError(
            f"No schedule {schedule_id!r} among yours",
            hint="List yours with `mllib schedules list`.",
        )
    return rows[0]


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _epoch(text: str) -> float:
    return _moment(text).timestamp()


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A schedule as the API answers it (`model_ref` and `command` as a local one's)."""
    gates = json.loads(row["gates"] or "{}")
    model_ref = row.get("model_ref")
    words = (
        [f"mllib evaluate --model {model_ref}"]
        if model_ref
        else [f"mllib schedules: rerun of {row['template_run_id']}"]
    )
    words += [f"--data {d}" for d in json.loads(row["data"] or "[]")]
    words += [f"--fail-under {k}={v:g}" for k, v in gates.items()]
    return {
        "id": row["id"],
        "user": row["user"],
        "template_run_id": row["template_run_id"],
        "model_ref": model_ref or f"run {row['template_run_id']}",
        "command": " ".join([*words, f"--every {row['every']}"]),
        "every": row["every"],
        "gates": json.loads(row["gates"] or "{}"),
        "data": json.loads(row["data"] or "[]"),
        "created_at": row["created_at"],
        "next_due_at": row["next_due_at"],
        "last_run_at": row["last_run_at"],
        "last_error": row.get("last_error"),  # why its last run could not be queued
    }


def _runs(reg: Registry, row: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """The schedule's runs, newest first, with their eval metrics and the gates they broke."""
    gates = json.loads(row["gates"] or "{}")
    found = reg.query(
        "SELECT s.run_id, s.started_at, s.deployment_id, r.status, r.error, r.model "
        "FROM server_schedule_runs s "
        "JOIN runs r ON r.id = s.run_id WHERE s.schedule_id = ? "
        "ORDER BY s.started_at DESC LIMIT ?",
        (row["id"], limit),
    )
    out = []
    for r in found:
        values = get_eval_metrics(reg, r["run_id"]) if r["status"] == "succeeded" else {}
        broken = breaches(values, gates) if values else []
        status = "breached" if broken else r["status"]
        version = evaluations.evaluated_version(reg, r["run_id"])
        deployment = deployments.get(reg, r["deployment_id"])
        out.append(
            {
                **r,
                "status": status,
                "eval_metrics": values,
                "breaches": broken,
                "version": version.version if version else None,
                "deployment_id": r["deployment_id"],  # the deployment serving that version
                "env": deployment["env"] if deployment else None,
            }
        )
    return out


def deployment_of_run(reg: Registry, run_id: str) -> dict[str, Any] | None:
    """The deployment whose version scheduled evaluation `run_id` evaluated (`runs show`)."""
    rows = reg.query("SELECT deployment_id FROM server_schedule_runs WHERE run_id = ?", (run_id,))
    found = deployments.get(reg, rows[0]["deployment_id"]) if rows else None
    return deployments.public(found) if found else None

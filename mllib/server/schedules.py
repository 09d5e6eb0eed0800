"""Scheduled evaluations on the team server: the server, not a timer on someone's laptop, runs
them.

A schedule repeats one evaluation run its user queued on the server (its template: the same
code, model version, params and resources, as `runs rerun` does) every period, each time on the
newest version of every dataset the template read, except those its `data` pins with
`@VERSION`. The server's ticker (`Ticker`, a thread of `mllib server start`) queues each due
schedule's run as its user's, through the same group commit as any submission; a schedule is
claimed by moving its next time on first, so a restart or two tickers never queue one twice.
The template's `.env.remote` values and secret params are not kept (they leave the database
when its run ends), so scheduled runs get none.

>>> create(reg, who, "k3x9...", "1d", gates={"accuracy": 0.9}, data=[])  # doctest: +SKIP
{'id': 's5f0c2ab1', 'every': '1d', 'next_due_at': '2026-12-08T10:00:00.000000Z', ...}
"""

from __future__ import annotations

import json
import secrets
import threading
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from mllib.datasets.catalog import get_version
from mllib.datasets.refs import DatasetRef, parse_binding
from mllib.errors import NotFoundError, UsageError
from mllib.periods import every_seconds, next_time
from mllib.registry import Registry
from mllib.registry.metrics import get_eval_metrics
from mllib.registry.runs import get_run, iso, new_run_id, now
from mllib.runs.gates import breaches
from mllib.server.accounts import User, get_user

if TYPE_CHECKING:
    import sqlite_utils

    from mllib.server.commits import GroupCommit
    from mllib.server.context import ServerContext
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

    return migrations_


def create(
    reg: Registry,
    who: User,
    run_id: str,
    every: str,
    *,
    gates: dict[str, float] | None = None,
    data: list[str] | None = None,
) -> dict[str, Any]:
    """Repeat the evaluation run `run_id` (the caller's) every `every`; its first repeat is due
    one period after now (the template is this period's evaluation)."""
    from mllib.queue.jobs import get_job

    run = _own_run(reg, who, run_id)
    if "evaluate" not in run.action or get_job(reg, run.id) is None:
        raise UsageError(
            f"Run {run.id} is not an evaluation queued on this server",
            hint="Schedule an evaluation: mllib evaluate --model NAME --every 1d.",
        )
    every_s = every_seconds(every)
    for binding in data or []:
        parse_binding(binding)  # a usage error for a malformed one
    created = now()
    row = {
        "id": "s" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8)),
        "user": who.name,
        "template_run_id": run.id,
        "every": every,
        "every_s": every_s,
        "gates": json.dumps(gates or {}),
        "data": json.dumps(list(data or [])),
        "created_at": created,
        "next_due_at": iso(_epoch(created) + every_s),
        "last_run_at": created,
    }
    with reg.transaction():
        reg.db.table("server_schedules").insert(row)
        reg.db.table("server_schedule_runs").insert(
            {"run_id": run.id, "schedule_id": row["id"], "started_at": created}
        )
    return _public(row)


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


def submission(reg: Registry, schedule: dict[str, Any], key: str) -> Any:
    """The run a schedule queues now (idempotency key `key`): its template again, on the newest
    version of each dataset the template read that `data` does not pin."""
    from mllib.server.submit import rerun_of

    template = get_run(reg, schedule["template_run_id"])
    sub = rerun_of(reg, template, {"run_id": new_run_id(), "idempotency_key": key})
    bindings = [parse_binding(b) for b in json.loads(schedule["data"] or "[]")]
    pinned = {env for env, ref in bindings if ref.version is not None}
    for binding in sub.datasets:
        if binding["env"] not in pinned:
            binding["version"] = get_version(reg, DatasetRef(binding["name"])).version
    return sub


def queue_now(
    reg: Registry, commits: GroupCommit, ctx: ServerContext, schedule: dict[str, Any], key: str
) -> Accepted:
    """Queue one run of `schedule` as its user's, and record it as the schedule's."""
    user = get_user(reg, schedule["user"])
    limit = user.max_queued if user.max_queued is not None else ctx.settings.max_queued
    accepted = commits.submit(user, submission(reg, schedule, key), limit)
    with reg.transaction():
        reg.conn.execute(
            "INSERT INTO server_schedule_runs (run_id, schedule_id, started_at) VALUES (?, ?, ?) "
            "ON CONFLICT (run_id) DO NOTHING",
            (accepted.run.id, schedule["id"], now()),
        )
    return accepted


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
                _log(ctx, f"schedule {row['id']}: its run could not be queued: {exc}")
    return queued


class Ticker:
    """The thread of `mllib server start` that queues due schedules every TICK_S."""

    def __init__(self, ctx: ServerContext, commits: GroupCommit) -> None:
        self.ctx, self.commits = ctx, commits
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="schedules", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                with self.ctx.registry() as reg:
                    tick(reg, self.commits, self.ctx)
            except Exception as exc:  # the database went away: the next tick tries again
                _log(self.ctx, f"schedules: {exc}")
            self.stopping.wait(TICK_S)


def _log(ctx: ServerContext, line: str) -> None:
    import sys

    print(f"mllib server: {line}", file=sys.stderr, flush=True)


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
    words = [f"mllib schedules: rerun of {row['template_run_id']}"]
    words += [f"--data {d}" for d in json.loads(row["data"] or "[]")]
    words += [f"--fail-under {k}={v:g}" for k, v in gates.items()]
    return {
        "id": row["id"],
        "user": row["user"],
        "template_run_id": row["template_run_id"],
        "model_ref": f"run {row['template_run_id']}",
        "command": " ".join([*words, f"--every {row['every']}"]),
        "every": row["every"],
        "gates": json.loads(row["gates"] or "{}"),
        "data": json.loads(row["data"] or "[]"),
        "created_at": row["created_at"],
        "next_due_at": row["next_due_at"],
        "last_run_at": row["last_run_at"],
    }


def _runs(reg: Registry, row: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """The schedule's runs, newest first, with their eval metrics and the gates they broke."""
    gates = json.loads(row["gates"] or "{}")
    found = reg.query(
        "SELECT s.run_id, s.started_at, r.status, r.error, r.model FROM server_schedule_runs s "
        "JOIN runs r ON r.id = s.run_id WHERE s.schedule_id = ? "
        "ORDER BY s.started_at DESC LIMIT ?",
        (row["id"], limit),
    )
    out = []
    for r in found:
        values = get_eval_metrics(reg, r["run_id"]) if r["status"] == "succeeded" else {}
        broken = breaches(values, gates) if values else []
        status = "breached" if broken else r["status"]
        out.append(
            {
                **r,
                "status": status,
                "eval_metrics": values,
                "breaches": broken,
                "version": None,  # as a local schedule's runs: no deployment is involved
                "deployment_id": None,
                "env": None,
            }
        )
    return out

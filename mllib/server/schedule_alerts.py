"""Alerts of the team server's scheduled evaluations: a schedule's run that ended with a
`--fail-under` gate broken, or a schedule whose run could not be queued (its model name means
nothing now...), is reported once as a Sentry event from the server, with the DSN of the
server's environment (`SENTRY_DSN`, its home's .env.local, or `[sentry] dsn` in its mllib.toml).
`mllib schedules list` shows the same outcome (`breached` and the gates broken, or the error).

The ticker (mllib.server.schedules.Ticker) calls `check` at each tick; a run is claimed before
its event is sent, so two tickers (or a restart) report it once.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from mllib.registry.metrics import get_eval_metrics
from mllib.registry.runs import now
from mllib.runs.gates import ALERT_CLASS, alert, breaches
from mllib.server import evaluations

if TYPE_CHECKING:
    from mllib.registry import Registry
    from mllib.server.context import ServerContext

ENDED = ("succeeded", "failed", "cancelled")


def check(reg: Registry, ctx: ServerContext) -> list[str]:
    """Report each schedule's run that ended since the last check with a gate broken; the ids of
    those reported."""
    marks = ", ".join("?" for _ in ENDED)
    ended = reg.query(
        "SELECT s.run_id, s.schedule_id, r.status, r.model, sc.gates, sc.user "
        "FROM server_schedule_runs s JOIN runs r ON r.id = s.run_id "
        "JOIN server_schedules sc ON sc.id = s.schedule_id "
        f"WHERE s.alerted_at IS NULL AND r.status IN ({marks})",
        ENDED,
    )
    reported = []
    for row in ended:
        with reg.transaction():
            claimed = reg.conn.execute(
                "UPDATE server_schedule_runs SET alerted_at = ? "
                "WHERE run_id = ? AND alerted_at IS NULL",
                (now(), row["run_id"]),
            ).rowcount
        values = get_eval_metrics(reg, row["run_id"]) if row["status"] == "succeeded" else {}
        broken = breaches(values, json.loads(row["gates"] or "{}")) if values else []
        if claimed == 1 and broken:
            version = evaluations.evaluated_version(reg, row["run_id"])
            what = version.ref if version else row["model"]
            report(
                ctx,
                f"Scheduled evaluation of {what}: {'; '.join(broken)}",
                schedule=row["schedule_id"],
                run_id=row["run_id"],
                model=row["model"],
                version=version.version if version else None,
                user=row["user"],
            )
            reported.append(row["run_id"])
    return reported


def report(
    ctx: ServerContext, message: str, *, failure_class: str = ALERT_CLASS, **tags: object
) -> None:
    """One Sentry event from the server, with its DSN (nothing without one)."""
    alert(ctx.project, message, failure_class=failure_class, **tags)

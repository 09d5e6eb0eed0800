"""Schedules as rows of the registry: add, list, remove, which are due, and what each run did.

>>> every_seconds("1d"), every_seconds("6h"), every_seconds("30m")
(86400, 21600, 1800)
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from mllib.errors import NotFoundError
from mllib.identity import current_user
from mllib.periods import every_seconds, next_time
from mllib.registry.db import Registry
from mllib.registry.runs import now

_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass
class Schedule:
    """One scheduled evaluation."""

    id: str
    model_ref: str
    every: str
    every_s: int
    created_at: str
    next_due_at: str
    action: str = "evaluate"
    best: str | None = None
    data: list[str] = field(default_factory=list)
    gates: dict[str, float] = field(default_factory=dict)
    runtime: str | None = None
    user: str | None = None
    last_run_at: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Schedule:
        values = dict(row)
        values["data"] = json.loads(values.get("data") or "[]")
        values["gates"] = json.loads(values.get("gates") or "{}")
        return cls(**values)

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["data"] = json.dumps(self.data)
        row["gates"] = json.dumps(self.gates)
        return row

    def command(self) -> str:
        """The `mllib evaluate` this schedule runs, as a user would type it."""
        words = ["mllib evaluate", f"--model {self.model_ref}"]
        words += [f"--best {self.best}"] if self.best else []
        words += [f"--data {d}" for d in self.data]
        words += [f"--fail-under {k}={v:g}" for k, v in self.gates.items()]
        words += [f"--runtime {self.runtime}"] if self.runtime else []
        return " ".join([*words, f"--every {self.every}"])


def add(
    reg: Registry,
    model_ref: str,
    every: str,
    *,
    best: str | None = None,
    data: list[str] | None = None,
    gates: dict[str, float] | None = None,
    runtime: str | None = None,
) -> Schedule:
    """A new schedule, first due now (the next tick of the timer runs it)."""
    created = now()
    schedule = Schedule(
        id="s" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(7)),
        model_ref=model_ref,
        every=every,
        every_s=every_seconds(every),
        created_at=created,
        next_due_at=created,
        best=best,
        data=list(data or []),
        gates=dict(gates or {}),
        runtime=runtime,
        user=current_user(),
    )
    with reg.transaction():
        reg.db.table("schedules").insert(schedule.as_row())
    return schedule


def all_schedules(reg: Registry) -> list[Schedule]:
    return [Schedule.from_row(r) for r in reg.query("SELECT * FROM schedules ORDER BY created_at")]


def get(reg: Registry, schedule_id: str) -> Schedule:
    rows = reg.query("SELECT * FROM schedules WHERE id = ?", (schedule_id,))
    if not rows:
        known = ", ".join(s.id for s in all_schedules(reg)) or "none yet"
        raise NotFoundError(f"No schedule {schedule_id!r}", hint=f"Schedules: {known}.")
    return Schedule.from_row(rows[0])


def remove(reg: Registry, schedule_id: str) -> Schedule:
    """Remove a schedule and its run records (the evaluation runs themselves stay)."""
    schedule = get(reg, schedule_id)
    with reg.transaction():
        reg.db.execute("DELETE FROM schedule_runs WHERE schedule_id = ?", (schedule_id,))
        reg.db.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,))
    return schedule


def due(reg: Registry, at: str | None = None) -> list[Schedule]:
    """The schedules whose time has come, longest overdue first."""
    rows = reg.query(
        "SELECT * FROM schedules WHERE next_due_at <= ? ORDER BY next_due_at", (at or now(),)
    )
    return [Schedule.from_row(r) for r in rows]


def claim(reg: Registry, schedule: Schedule) -> bool:
    """Move `schedule`'s next time on by its period, unless another runner did first (two timers,
    or run-due overlapping itself): only the one that claims it runs it."""
    started = now()
    following = _iso(next_time(_parse(schedule.next_due_at), _parse(started), schedule.every_s))
    with reg.transaction():
        cursor = reg.db.execute(
            "UPDATE schedules SET next_due_at = ?, last_run_at = ? WHERE id = ? AND next_due_at = ?",
            (following, started, schedule.id, schedule.next_due_at),
        )
    return cursor.rowcount == 1


def record_run(reg: Registry, schedule_id: str, **values: Any) -> None:
    """What one run of a schedule did: its run id, the version, deployment, status, breaches."""
    values["breaches"] = json.dumps(values.get("breaches") or [])
    with reg.transaction():
        reg.db.table("schedule_runs").insert(
            {"schedule_id": schedule_id, "started_at": now(), **values}
        )


def runs_of(reg: Registry, schedule_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The schedule's latest runs, newest first."""
    rows = reg.query(
        "SELECT * FROM schedule_runs WHERE schedule_id = ? ORDER BY started_at DESC LIMIT ?",
        (schedule_id, limit),
    )
    for row in rows:
        row["breaches"] = json.loads(row["breaches"] or "[]")
        del row["schedule_id"]
    return rows


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")

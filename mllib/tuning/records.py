"""Studies and their trials' runs in the registry (tables in mllib.tuning.schema)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mllib.errors import NotFoundError, UsageError
from mllib.registry.db import Registry
from mllib.registry.runs import now

PRUNED = "pruned"  # the failure_class of a trial's run its study pruned (status: cancelled)


@dataclass
class StudyRecord:
    """One row of the studies table, its JSON columns decoded."""

    name: str
    model: str
    model_ref: str
    metric: str
    direction: str
    settings: dict[str, Any]
    space: dict[str, str]
    fixed: dict[str, Any] = field(default_factory=dict)
    launch: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    metric_source: str | None = None
    error: str | None = None
    user: str | None = None
    created_at: str = ""
    updated_at: str | None = None
    driver_pid: int | None = None
    driver_ctime: float | None = None

    _JSON = ("settings", "space", "fixed", "launch")

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> StudyRecord:
        values = dict(row)
        for key in cls._JSON:
            values[key] = json.loads(values[key] or "{}")
        return cls(**values)

    def to_row(self) -> dict[str, Any]:
        row = dict(self.__dict__)
        for key in self._JSON:
            row[key] = json.dumps(row[key], sort_keys=True)
        return row


def create_study(reg: Registry, study: StudyRecord) -> None:
    """Record a new study; a name already taken is a usage error."""
    with reg.transaction():
        if reg.query("SELECT 1 FROM studies WHERE name = ?", (study.name,)):
            raise UsageError(
                f"A study named {study.name!r} exists already",
                hint=f"Continue it with `mllib tune resume {study.name}`, or pick another --name.",
            )
        study.created_at = study.updated_at = now()
        reg.db.table("studies").insert(study.to_row())


def get_study(reg: Registry, name: str) -> StudyRecord:
    rows = reg.query("SELECT * FROM studies WHERE name = ?", (name,))
    if not rows:
        raise NotFoundError(
            f"No study {name!r} in this registry", hint="List studies with `mllib tune list`."
        )
    return StudyRecord.from_row(rows[0])


def list_studies(reg: Registry) -> list[StudyRecord]:
    rows = reg.query("SELECT * FROM studies ORDER BY created_at DESC, rowid DESC")
    return [StudyRecord.from_row(r) for r in rows]


def update_study(reg: Registry, name: str, **values: Any) -> None:
    with reg.transaction():
        reg.db.table("studies").update(name, {**values, "updated_at": now()})


def link_trial(reg: Registry, study: str, number: int, run_id: str, retry_of: int | None) -> None:
    """Record that trial `number` of `study` is run `run_id` (plain SQL: once a trial)."""
    with reg.transaction():
        reg.conn.execute(
            "INSERT INTO study_trials (study, number, run_id, retry_of, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (study, number) DO UPDATE SET"
            " run_id = excluded.run_id, retry_of = excluded.retry_of,"
            " created_at = excluded.created_at",
            (study, number, run_id, retry_of, now()),
        )


def trial_runs(reg: Registry, study: str) -> dict[int, dict[str, Any]]:
    """Trial number -> {run_id, retry_of, status, failure_class, error, started_at, ended_at}
    of a study's trials that got a run."""
    rows = reg.query(
        "SELECT t.number, t.run_id, t.retry_of, r.status, r.failure_class, r.error, r.started_at,"
        " r.ended_at FROM study_trials t LEFT JOIN runs r ON r.id = t.run_id WHERE t.study = ?"
        " ORDER BY t.number",
        (study,),
    )
    return {r.pop("number"): r for r in rows}


def study_of_run(reg: Registry, run_id: str) -> tuple[str, int] | None:
    """(study, trial number) of a run that is a trial, else None."""
    rows = reg.query("SELECT study, number FROM study_trials WHERE run_id = ?", (run_id,))
    return (rows[0]["study"], rows[0]["number"]) if rows else None


def mark_pruned(reg: Registry, run_id: str, reason: str) -> bool:
    """Record a cancelled trial run as pruned (failure class `pruned`, the pruner's reason as its
    error); False when the run did not end cancelled (it finished before the cancel reached it)."""
    with reg.transaction():
        cursor = reg.conn.execute(
            "UPDATE runs SET failure_class = ?, error = ? WHERE id = ? AND status = 'cancelled'",
            (PRUNED, reason, run_id),
        )
        return cursor.rowcount == 1

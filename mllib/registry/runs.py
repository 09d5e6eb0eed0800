"""Runs in the registry: creating them whole, moving them through their states, finding them again."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mllib.errors import NotFoundError, UsageError
from mllib.registry.db import Registry, where_equal

if TYPE_CHECKING:
    from mllib.params import ResolvedParams

ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")
_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def now() -> str:
    """UTC time as ISO 8601 text, which sorts correctly as a string."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def iso(ts: float) -> str:
    """Epoch seconds as the registry's time text (`now()`'s format)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_run_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


def params_hash(values: Mapping[str, Any]) -> str:
    """A stable hash of resolved params, to find earlier runs with the same ones."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class RunRecord:
    """One row of the runs table."""

    id: str
    model: str
    action: str
    status: str
    created_at: str
    model_class: str | None = None
    model_file: str | None = None
    project_dir: str | None = None
    failure_class: str | None = None
    error: str | None = None
    runtime: str | None = None
    runtime_note: str | None = None
    env_target: str | None = None
    host: str | None = None
    user: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    code_hash: str | None = None
    params_hash: str | None = None
    seed: int | None = None
    source_run_id: str | None = None
    rerun_of: str | None = None
    run_dir: str | None = None
    log_path: str | None = None
    supervisor_pid: int | None = None
    supervisor_ctime: float | None = None
    worker_pid: int | None = None
    worker_ctime: float | None = None
    exit_code: int | None = None
    phase: str | None = None
    attempt: int | None = None
    mllib_version: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def duration_s(self) -> float | None:
        if not self.started_at:
            return None
        end = _parse(self.ended_at) if self.ended_at else datetime.now(UTC)
        return (end - _parse(self.started_at)).total_seconds()


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def create_run(
    reg: Registry,
    record: RunRecord,
    params: Mapping[str, Any],
    sources: Mapping[str, str],
    secret: Collection[str] = (),
) -> None:
    """Insert a run and its params in one transaction, so a run is never half-recorded."""
    from mllib.registry.bulk import insert_rows
    from mllib.registry.runfolder import save_record

    with reg.transaction():
        insert_rows(reg, "runs", [run_row(record)])  # plain SQL: a team server's hot path
        set_params(reg, record.id, params, sources, secret)
        if record.run_dir and os.path.isdir(record.run_dir):  # not yet: a queued server run's
            # the run folder's own copy, for `mllib doctor --repair`
            save_record(reg, record.id, fresh=True)


def run_row(record: RunRecord) -> dict[str, Any]:
    """A new run's row of the runs table: its fields that are set."""
    return {k: v for k, v in record.__dict__.items() if v is not None}


def param_rows(
    run_id: str,
    params: Mapping[str, Any],
    sources: Mapping[str, str],
    secret: Collection[str] = (),
) -> list[tuple[str, str, str, str, str]]:
    """A run's rows of the params table (run_id, name, value, type, source); those named in
    `secret` as SECRET_MARKER with the type `secret`."""
    from mllib.params import SECRET_MARKER, SECRET_TYPE, type_name_of

    return [
        (
            run_id,
            name,
            json.dumps(SECRET_MARKER if name in secret else value),
            SECRET_TYPE if name in secret else type_name_of(value),
            sources.get(name, "default"),
        )
        for name, value in params.items()
    ]


def set_params(
    reg: Registry,
    run_id: str,
    params: Mapping[str, Any],
    sources: Mapping[str, str],
    secret: Collection[str] = (),
) -> None:
    """Record a run's params; those named in `secret` as SECRET_MARKER with the type `secret`."""
    rows = param_rows(run_id, params, sources, secret)
    if not rows:
        return
    sql = (
        "INSERT INTO params (run_id, name, value, type, source) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (run_id, name) DO UPDATE SET value = excluded.value, "
        "type = excluded.type, source = excluded.source"
    )
    with reg.transaction():
        if len(rows) == 1:  # one statement (psycopg's executemany sets up a pipeline)
            reg.conn.execute(sql, rows[0])
        else:
            reg.conn.executemany(sql, rows)


def update_run(reg: Registry, run_id: str, **values: Any) -> None:
    """Set columns of a run's row (nothing when the run is not recorded)."""
    with reg.transaction():
        _set(reg, run_id, values)


def _set(reg: Registry, run_id: str, values: Mapping[str, Any]) -> None:
    """One plain UPDATE of a runs row: every run moves through several, so no table
    introspection per call (sqlite-utils' `update` reads the table's columns and row first)."""
    if not values:
        return
    # Quoted: `user` is a column here and a keyword (the session's user) to PostgreSQL.
    sets = ", ".join(f'"{name}" = ?' for name in values)
    reg.conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*values.values(), run_id))


def finish_run(
    reg: Registry,
    run_id: str,
    status: str,
    failure_class: str | None,
    error: str | None,
    **values: Any,
) -> bool:
    """Move an active run to its final state; False if it had already ended (another process won)."""
    from mllib.registry.runfolder import save_record

    with reg.transaction():
        if not _active(reg, run_id):
            return False
        _set(
            reg,
            run_id,
            {
                "status": status,
                "failure_class": failure_class,
                "error": error,
                "ended_at": now(),
                **values,
            },
        )
        save_record(reg, run_id)
        return True


def claim_run(reg: Registry, run_id: str, pid: int, ctime: float | None) -> bool:
    """Make process `pid` the supervisor of an active run; False if the run has already ended
    (cancelled before this supervisor took over: it must not start it). A run recorded with
    `pid` as its supervisor already (the process that prepared it supervises it) is only read."""
    row = reg.conn.execute(
        "SELECT status, supervisor_pid, supervisor_ctime FROM runs WHERE id = ?", (run_id,)
    ).fetchone()
    if row is not None and row[0] not in TERMINAL and (row[1], row[2]) == (pid, ctime):
        return True
    with reg.transaction():
        if not _active(reg, run_id):
            return False
        _set(reg, run_id, {"supervisor_pid": pid, "supervisor_ctime": ctime})
        return True


def _active(reg: Registry, run_id: str) -> bool:
    row = reg.conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
    return row is not None and row[0] not in TERMINAL


def get_run(reg: Registry, run_id: str) -> RunRecord:
    """A run by id or unique id prefix (at least 4 characters)."""
    rows = reg.query("SELECT * FROM runs WHERE id = ?", (run_id,))
    if not rows and len(run_id) < 4:  # not found (callers may try a name as a run id)
        raise NotFoundError(
            f"No run {run_id!r}: a run id prefix needs 4 or more characters",
            hint="Give more characters of the id; `mllib runs list` shows them.",
        )
    if not rows:
        rows = reg.query(  # literally: `_` and `%` are characters here, not LIKE's wildcards
            "SELECT * FROM runs WHERE substr(id, 1, ?) = ? LIMIT 3", (len(run_id), run_id)
        )
        if len(rows) > 1:
            raise UsageError(
                f"Run id prefix {run_id!r} matches several runs",
                hint="Give more characters of the id.",
            )
    if not rows:
        raise NotFoundError(
            f"No run {run_id!r} in this registry", hint="List runs with `mllib runs list`."
        )
    return RunRecord.from_row(rows[0])


def list_runs(
    reg: Registry,
    *,
    status: str | None = None,
    model: str | None = None,
    user: str | None = None,
    limit: int | None = 20,
) -> list[RunRecord]:
    """Runs, newest first."""
    where, args = where_equal(status=status, model=model, user=user)
    sql = "SELECT * FROM runs" + where + " ORDER BY created_at DESC, rowid DESC"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return [RunRecord.from_row(r) for r in reg.query(sql, args)]


def count_runs(
    reg: Registry, *, status: str | None = None, model: str | None = None, user: str | None = None
) -> int:
    """How many runs `list_runs` would list with no limit."""
    where, args = where_equal(status=status, model=model, user=user)
    return int(reg.query("SELECT COUNT(*) AS n FROM runs" + where, args)[0]["n"])


def runs_by_id(reg: Registry, run_ids: Collection[str]) -> list[RunRecord]:
    """The runs with these exact ids (those that exist), newest first."""
    ids = list(run_ids)
    records: list[RunRecord] = []
    for start in range(0, len(ids), 500):  # SQLite's limit on parameters is far above 500
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        rows = reg.query(f"SELECT * FROM runs WHERE id IN ({marks})", chunk)
        records += [RunRecord.from_row(r) for r in rows]
    return sorted(records, key=lambda r: r.created_at, reverse=True)


def active_runs(reg: Registry) -> list[RunRecord]:
    rows = reg.query("SELECT * FROM runs WHERE status IN ('queued', 'running') ORDER BY created_at")
    return [RunRecord.from_row(r) for r in rows]


def get_params(reg: Registry, run_id: str) -> dict[str, Any]:
    rows = reg.query("SELECT name, value FROM params WHERE run_id = ? ORDER BY rowid", (run_id,))
    return {r["name"]: json.loads(r["value"]) for r in rows}


def get_param_sources(reg: Registry, run_id: str) -> dict[str, str]:
    rows = reg.query("SELECT name, source FROM params WHERE run_id = ? ORDER BY rowid", (run_id,))
    return {r["name"]: r["source"] for r in rows}


def get_secret_params(reg: Registry, run_id: str) -> set[str]:
    """The names of a run's secret params (recorded as a marker, not their value)."""
    from mllib.params import SECRET_TYPE

    rows = reg.query("SELECT name FROM params WHERE run_id = ? AND type = ?", (run_id, SECRET_TYPE))
    return {r["name"] for r in rows}


def recorded_params(reg: Registry, run_id: str) -> ResolvedParams:
    """A run's params as recorded: values (secrets as the marker), sources and secret names."""
    from mllib.params import ResolvedParams

    return ResolvedParams(
        get_params(reg, run_id),
        get_param_sources(reg, run_id),
        frozenset(get_secret_params(reg, run_id)),
    )


def find_trained_run(reg: Registry, model: str, p_hash: str | None) -> RunRecord | None:
    """The newest successful training run of `model` (with these params, when a hash is given)."""
    sql = "SELECT * FROM runs WHERE model = ? AND status = 'succeeded' AND action LIKE 'train%'"
    args: list[Any] = [model]
    if p_hash is not None:
        sql += " AND params_hash = ?"
        args.append(p_hash)
    rows = reg.query(sql + " ORDER BY created_at DESC, rowid DESC LIMIT 1", args)
    return RunRecord.from_row(rows[0]) if rows else None

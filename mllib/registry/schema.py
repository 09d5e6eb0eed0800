"""The registry's tables, created and changed only by numbered migrations (sqlite-utils Migrations).

Each feature owns a migration set in its own package (runs here; datasets, serving, agents in
theirs), named in mllib.plugins.MIGRATIONS, so the registry names no higher package; within a
set, migrations are numbered and never edited once released. Sets are applied in the order
listed there.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING

from mllib.registry.sqlite import import_sqlite_utils

if TYPE_CHECKING:
    import sqlite_utils


def new_set(name: str) -> sqlite_utils.Migrations:
    """An empty migration set named `name`, for a feature's `migrations()` to fill (sqlite-utils
    imported the registry's way)."""
    migrations: sqlite_utils.Migrations = import_sqlite_utils().Migrations(name)
    return migrations


@cache
def migrations() -> sqlite_utils.Migrations:
    """The runs' migration set (built on first use, so importing this module stays cheap)."""
    migrations = new_set("mllib.registry")

    @migrations(name="0001_runs_params_metrics_artifacts_models")
    def initial(db: sqlite_utils.Database) -> None:
        db.table("runs").create(
            {
                "id": str,
                "model": str,
                "model_class": str,
                "model_file": str,
                "project_dir": str,
                "action": str,
                "status": str,
                "failure_class": str,
                "error": str,
                "runtime": str,
                "runtime_note": str,
                "env_target": str,
                "host": str,
                "user": str,
                "created_at": str,
                "started_at": str,
                "ended_at": str,
                "code_hash": str,
                "params_hash": str,
                "seed": int,
                "source_run_id": str,
                "rerun_of": str,
                "run_dir": str,
                "log_path": str,
                "supervisor_pid": int,
                "supervisor_ctime": float,
                "worker_pid": int,
                "worker_ctime": float,
                "exit_code": int,
                "phase": str,
                "attempt": int,
                "mllib_version": str,
            },
            pk="id",
            not_null={"model", "action", "status", "created_at"},
        )
        db.table("runs").create_index(["status"])
        db.table("runs").create_index(["model", "created_at"])
        db.table("params").create(
            {"run_id": str, "name": str, "value": str, "type": str, "source": str},
            pk=("run_id", "name"),
            foreign_keys=[("run_id", "runs", "id")],
        )
        # seq numbers a run's points in logging order, so re-reading events never duplicates one.
        db.table("metrics").create(
            {"run_id": str, "seq": int, "name": str, "step": int, "value": float, "ts": float},
            pk=("run_id", "seq"),
            foreign_keys=[("run_id", "runs", "id")],
        )
        db.table("metrics").create_index(["run_id", "name", "step"])
        db.table("eval_metrics").create(
            {"run_id": str, "name": str, "value": float},
            pk=("run_id", "name"),
            foreign_keys=[("run_id", "runs", "id")],
        )
        db.table("artifacts").create(
            {
                "run_id": str,
                "path": str,
                "kind": str,
                "sha256": str,
                "size": int,
                "created_at": str,
            },
            pk=("run_id", "path"),
            foreign_keys=[("run_id", "runs", "id")],
        )
        db.table("models").create(
            {"name": str, "version": int, "run_id": str, "sha256": str, "created_at": str},
            pk=("name", "version"),
            foreign_keys=[("run_id", "runs", "id")],
        )
        db.table("models").create_index(["run_id"], unique=True)

    @migrations(name="0002_model_aliases_and_evaluations")
    def aliases(db: sqlite_utils.Database) -> None:
        # NAME@ALIAS names one version of a model; an alias names at most one version at a time.
        db.execute(
            """
            CREATE TABLE model_aliases (
                name TEXT NOT NULL,
                alias TEXT NOT NULL,
                version INTEGER NOT NULL,
                set_at TEXT NOT NULL,
                set_by TEXT,
                PRIMARY KEY (name, alias),
                FOREIGN KEY (name, version) REFERENCES models (name, version)
            )
            """
        )
        # A training run's evaluations are the runs whose source it is.
        db.table("runs").create_index(["source_run_id"])

    @migrations(name="0003_run_environments")
    def environments(db: sqlite_utils.Database) -> None:
        # Where each run ran, as its worker saw it (mllib.worker.environment): JSON, and the
        # hash of its installed packages (equal hashes, equal package sets).
        db.table("run_environments").create(
            {"run_id": str, "data": str, "packages_hash": str},
            pk="run_id",
            foreign_keys=[("run_id", "runs", "id")],
        )

    @migrations(name="0004_model_numbers")
    def model_numbers(db: sqlite_utils.Database) -> None:
        # Every version number each model name has been given, and to which run: a removed
        # version's number is never given to another run (deploy history, aliases and links in
        # notes keep naming it), while a run recorded again (synced anew) gets its own back.
        db.execute(
            "CREATE TABLE model_numbers (name TEXT NOT NULL, version INTEGER NOT NULL,"
            " run_id TEXT NOT NULL, PRIMARY KEY (name, version))"
        )
        db.execute("CREATE INDEX model_numbers_run ON model_numbers (run_id)")
        db.execute(
            "INSERT INTO model_numbers (name, version, run_id) SELECT name, version, run_id"
            " FROM models"
        )

    return migrations


def migration_sets(refs: Iterable[str]) -> list[sqlite_utils.Migrations]:
    """The migration sets `refs` name ("module:function"), imported now."""
    from mllib.plugins import load

    return [load(ref)() for ref in refs]

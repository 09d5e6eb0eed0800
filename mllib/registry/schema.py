"""The registry's tables, created and changed only by numbered migrations (sqlite-utils Migrations).

Each feature owns a migration set in its own package (runs here; datasets, serving, agents in
theirs) listed in MIGRATION_SETS; within a set, migrations are numbered and never edited once
released. Sets are applied in the order listed.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils

    from mllib.registry.db import Registry

# "module:function" returning a sqlite_utils.Migrations; imported only when a registry is opened.
MIGRATION_SETS = [
    "mllib.registry.schema:migrations",
    "mllib.agents.schema:migrations",
    "mllib.datasets.schema:migrations",
    "mllib.serving.schema:migrations",
    "mllib.registry.changes:migrations",
]


def new_set(name: str) -> sqlite_utils.Migrations:
    """An empty migration set named `name`, for a feature's `migrations()` to fill (sqlite-utils
    imported the registry's way)."""
    from mllib.registry.db import import_sqlite_utils

    return import_sqlite_utils().Migrations(name)


@cache
def migrations() -> sqlite_utils.Migrations:
    """The runs' migration set (built on first use, so importing this module stays cheap)."""
    migrations = new_set("mllib.registry")

    @migrations(name="0001_runs_params_metrics_artifacts_models")
    def initial(db: sqlite_utils.Database) -> None:
        db["runs"].create(
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
        db["runs"].create_index(["status"])
        db["runs"].create_index(["model", "created_at"])
        db["params"].create(
            {"run_id": str, "name": str, "value": str, "type": str, "source": str},
            pk=("run_id", "name"),
            foreign_keys=[("run_id", "runs", "id")],
        )
        # seq numbers a run's points in logging order, so re-reading events never duplicates one.
        db["metrics"].create(
            {"run_id": str, "seq": int, "name": str, "step": int, "value": float, "ts": float},
            pk=("run_id", "seq"),
            foreign_keys=[("run_id", "runs", "id")],
        )
        db["metrics"].create_index(["run_id", "name", "step"])
        db["eval_metrics"].create(
            {"run_id": str, "name": str, "value": float},
            pk=("run_id", "name"),
            foreign_keys=[("run_id", "runs", "id")],
        )
        db["artifacts"].create(
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
        db["models"].create(
            {"name": str, "version": int, "run_id": str, "sha256": str, "created_at": str},
            pk=("name", "version"),
            foreign_keys=[("run_id", "runs", "id")],
        )
        db["models"].create_index(["run_id"], unique=True)

    return migrations


def all_migration_sets() -> list:
    import importlib

    sets = []
    for ref in MIGRATION_SETS:
        module, _, name = ref.partition(":")
        sets.append(getattr(importlib.import_module(module), name)())
    return sets


def migrate(registry: Registry) -> None:
    """Apply pending migrations of every set, one process at a time."""
    sets = all_migration_sets()
    if not any(m.pending(registry.db) for m in sets):
        return
    with registry.transaction():
        for m in sets:
            m.apply(registry.db)

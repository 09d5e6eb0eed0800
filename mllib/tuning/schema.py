"""The tuning migration set: studies, and which run each of their trials is (the study <-> run link).

Optuna's own journal holds the sampler's state (trials, params, values, intermediate values); the
registry holds what the rest of mllib reads: a study's settings and the run behind each trial, so
`runs show` of a trial and `tune show` of a study find each other.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from mllib.registry.schema import new_set

if TYPE_CHECKING:
    import sqlite_utils


@cache
def migrations() -> sqlite_utils.Migrations:
    """This feature's migration set (built on first use, when a registry is opened)."""
    migrations = new_set("mllib.tuning")

    @migrations(name="0001_studies_trials")
    def initial(db: sqlite_utils.Database) -> None:
        db.table("studies").create(
            {
                "name": str,
                "model": str,  # the registry name of the model its trials train
                "model_ref": str,  # model.py or model.py:Class, relative to the project
                "metric": str,
                "direction": str,  # minimize, maximize
                "metric_source": str,  # evaluate (a key of evaluate()'s dict) or logged
                "settings": str,  # JSON: trials, parallel, timeout, sampler, pruner, seed
                "space": str,  # JSON: param -> "KIND:ARGS"
                "fixed": str,  # JSON: params fixed for every trial (--NAME=V)
                "launch": str,  # JSON: runtime, remote, agent, data
                "status": str,  # running, finished, interrupted, stopped
                "error": str,  # why it stopped early
                "user": str,
                "created_at": str,
                "updated_at": str,
                "driver_pid": int,  # the `mllib tune` process driving it while running
                "driver_ctime": float,
            },
            pk="name",
            not_null={"model", "metric", "direction", "status", "created_at"},
        )
        # One row per trial that got a run: trial `number` of `study` is run `run_id`; a system
        # error retried as a new trial names the trial it repeats.
        db.table("study_trials").create(
            {"study": str, "number": int, "run_id": str, "retry_of": int, "created_at": str},
            pk=("study", "number"),
            foreign_keys=[("study", "studies", "name"), ("run_id", "runs", "id")],
        )
        db.table("study_trials").create_index(["run_id"], unique=True)

    return migrations

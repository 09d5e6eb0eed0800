"""Artifacts of runs (files in the content-addressed store) and the model versions they become."""

from __future__ import annotations

from typing import Any

from mllib.registry.db import Registry
from mllib.registry.runfolder import save_record
from mllib.registry.runs import now


def add_artifact(reg: Registry, run_id: str, path: str, kind: str, sha256: str, size: int) -> None:
    with reg.transaction():
        reg.db.table("artifacts").upsert(
            {
                "run_id": run_id,
                "path": path,
                "kind": kind,
                "sha256": sha256,
                "size": size,
                "created_at": now(),
            },
            pk=("run_id", "path"),
        )


def list_artifacts(reg: Registry, run_id: str) -> list[dict[str, Any]]:
    return reg.query(
        "SELECT path, kind, sha256, size FROM artifacts WHERE run_id = ? ORDER BY kind DESC, path",
        (run_id,),
    )


def model_artifact(reg: Registry, run_id: str) -> dict[str, Any] | None:
    rows = reg.query("SELECT * FROM artifacts WHERE run_id = ? AND kind = 'model'", (run_id,))
    return rows[0] if rows else None


def register_model(
    reg: Registry, name: str, run_id: str, sha256: str, *, prefer: int | None = None
) -> int:
    """Record a new version of model `name` made by `run_id`; returns the version number: the
    one this run was given before (a run recorded again), else `prefer` when this name never
    had it (a version fetched from the team server keeps its number there), else one past any
    this name was ever given (a removed version's number is never given to another run)."""
    with reg.transaction():
        given = reg.conn.execute(
            "SELECT version FROM model_numbers WHERE name = ? AND run_id = ?", (name, run_id)
        ).fetchone()
        taken = (
            prefer is not None
            and reg.conn.execute(
                "SELECT 1 FROM model_numbers WHERE name = ? AND version = ? UNION "
                "SELECT 1 FROM models WHERE name = ? AND version = ?",
                (name, prefer, name, prefer),
            ).fetchone()
        )
        if given:
            version = int(given[0])
        elif prefer is not None and not taken:
            version = prefer
            reg.conn.execute(
                "INSERT INTO model_numbers (name, version, run_id) VALUES (?, ?, ?)",
                (name, version, run_id),
            )
        else:
            row = reg.conn.execute(
                "SELECT MAX(version), (SELECT MAX(version) FROM model_numbers WHERE name = ?)"
                " FROM models WHERE name = ?",
                (name, name),
            ).fetchone()
            version = max(row[0] or 0, row[1] or 0) + 1
            reg.conn.execute(
                "INSERT INTO model_numbers (name, version, run_id) VALUES (?, ?, ?)",
                (name, version, run_id),
            )
        reg.db.table("models").insert(
            {
                "name": name,
                "version": version,
                "run_id": run_id,
                "sha256": sha256,
                "created_at": now(),
            }
        )
        save_record(reg, run_id)  # the run folder's copy names its model version too
    return version


def model_version_of(reg: Registry, run_id: str) -> dict[str, Any] | None:
    rows = reg.query("SELECT name, version, sha256 FROM models WHERE run_id = ?", (run_id,))
    return rows[0] if rows else None

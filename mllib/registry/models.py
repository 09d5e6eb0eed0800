"""Model versions and their aliases in the registry: what `NAME:VERSION` and `NAME@ALIAS` name.

A successful training run that saved a model makes the next version of its model (see
mllib.registry.artifacts.register_model); an alias (`champion`) names one version of one model
at a time, and moves when it is set on another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mllib.registry.db import Registry
from mllib.registry.runs import now


@dataclass(frozen=True)
class ModelVersion:
    """One row of the models table: version `version` of model `name`, made by run `run_id`."""

    name: str
    version: int
    run_id: str
    sha256: str
    created_at: str

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ModelVersion:
        return cls(row["name"], row["version"], row["run_id"], row["sha256"], row["created_at"])


_COLUMNS = "name, version, run_id, sha256, created_at"


def versions(reg: Registry, name: str) -> list[ModelVersion]:
    """Every version of model `name`, newest first."""
    rows = reg.query(f"SELECT {_COLUMNS} FROM models WHERE name = ? ORDER BY version DESC", (name,))
    return [ModelVersion.from_row(r) for r in rows]


def get_version(reg: Registry, name: str, version: int) -> ModelVersion | None:
    rows = reg.query(
        f"SELECT {_COLUMNS} FROM models WHERE name = ? AND version = ?", (name, version)
    )
    return ModelVersion.from_row(rows[0]) if rows else None


def newest_version(reg: Registry, name: str) -> ModelVersion | None:
    rows = reg.query(
        f"SELECT {_COLUMNS} FROM models WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
    )
    return ModelVersion.from_row(rows[0]) if rows else None


def version_of_run(reg: Registry, run_id: str) -> ModelVersion | None:
    """The version run `run_id` made, if it made one."""
    rows = reg.query(f"SELECT {_COLUMNS} FROM models WHERE run_id = ?", (run_id,))
    return ModelVersion.from_row(rows[0]) if rows else None


def model_names(reg: Registry) -> list[str]:
    """Every model with at least one version, by name."""
    return list(newest_numbers(reg))


def newest_numbers(reg: Registry) -> dict[str, int]:
    """Model name -> its newest version number, by name."""
    rows = reg.query("SELECT name, MAX(version) AS newest FROM models GROUP BY name ORDER BY name")
    return {r["name"]: r["newest"] for r in rows}


def aliases(reg: Registry, name: str | None = None) -> dict[str, dict[str, int]]:
    """Model name -> {alias: version}, for one model or all."""
    sql = "SELECT name, alias, version FROM model_aliases"
    rows = (
        reg.query(sql + " WHERE name = ? ORDER BY alias", (name,))
        if name
        else reg.query(sql + " ORDER BY name, alias")
    )
    found: dict[str, dict[str, int]] = {}
    for r in rows:
        found.setdefault(r["name"], {})[r["alias"]] = r["version"]
    return found


def alias_version(reg: Registry, name: str, alias: str) -> int | None:
    """The version `NAME@ALIAS` names, or None when the model has no such alias."""
    rows = reg.query(
        "SELECT version FROM model_aliases WHERE name = ? AND alias = ?", (name, alias)
    )
    return rows[0]["version"] if rows else None


def alias_set_at(reg: Registry, name: str, alias: str) -> str | None:
    """When `NAME@ALIAS` was last pointed at a version (None when the model has no such alias)."""
    rows = reg.query("SELECT set_at FROM model_aliases WHERE name = ? AND alias = ?", (name, alias))
    return rows[0]["set_at"] if rows else None


def set_alias(reg: Registry, name: str, alias: str, version: int, user: str | None) -> int | None:
    """Point `NAME@ALIAS` at `version`; returns the version it named before (None if new)."""
    with reg.transaction():
        before = alias_version(reg, name, alias)
        reg.conn.execute(
            "INSERT INTO model_aliases (name, alias, version, set_at, set_by) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version,"
            " set_at = excluded.set_at, set_by = excluded.set_by",
            (name, alias, version, now(), user),
        )
        _save_records(reg, name, {before, version})
    return before


def remove_alias(reg: Registry, name: str, alias: str) -> int | None:
    """Remove `NAME@ALIAS`; returns the version it named (None if there was no such alias)."""
    with reg.transaction():
        before = alias_version(reg, name, alias)
        reg.conn.execute("DELETE FROM model_aliases WHERE name = ? AND alias = ?", (name, alias))
        _save_records(reg, name, {before})
    return before


def _save_records(reg: Registry, name: str, versions: set[int | None]) -> None:
    """The record.json of the runs of these versions, their aliases changed (mllib doctor
    rebuilds aliases from them)."""
    from mllib.registry.runfolder import save_record

    for number in versions:
        found = get_version(reg, name, number) if number is not None else None
        if found is not None:
            save_record(reg, found.run_id)

"""Dataset versions and the runs that used them, in the registry (tables: mllib.datasets.schema).

A version row is written only after every chunk and the manifest are stored and checked.
Removed versions keep their row with `deleted_at` set, so a version number is never reused and
a run's record of what it read stays true.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mllib.datasets.refs import DatasetRef
from mllib.errors import NotFoundError
from mllib.registry.db import Registry
from mllib.registry.runs import now


@dataclass(frozen=True)
class Version:
    """One live dataset version."""

    name: str
    version: int
    sha256: str
    kind: str
    entry: str | None
    size: int
    file_count: int
    chunk_count: int
    source: str | None
    created_at: str
    user: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Version:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


_LIVE = "deleted_at IS NULL"


def add_version(reg: Registry, row: dict[str, Any]) -> tuple[Version, bool]:
    """Record a new version of `row['name']`, unless its latest already has this content.

    Returns the version and whether it is new. Numbers continue after removed versions.
    """
    with reg.transaction():
        latest = latest_version(reg, row["name"])
        if latest is not None and latest.sha256 == row["sha256"]:
            return latest, False
        (top,) = reg.conn.execute(
            "SELECT MAX(version) FROM datasets WHERE name = ?", (row["name"],)
        ).fetchone()
        record = {**row, "version": (top or 0) + 1, "created_at": now()}
        reg.db["datasets"].insert(record)
    return Version.from_row(record), True


def latest_version(reg: Registry, name: str) -> Version | None:
    rows = reg.query(
        f"SELECT * FROM datasets WHERE name = ? AND {_LIVE} ORDER BY version DESC LIMIT 1", (name,)
    )
    return Version.from_row(rows[0]) if rows else None


def get_version(reg: Registry, ref: DatasetRef) -> Version:
    """The version a reference names (the latest when it gives none), or a NotFoundError."""
    if ref.version is None:
        found = latest_version(reg, ref.name)
    else:
        rows = reg.query(
            f"SELECT * FROM datasets WHERE name = ? AND version = ? AND {_LIVE}",
            (ref.name, ref.version),
        )
        found = Version.from_row(rows[0]) if rows else None
    if found is not None:
        return found
    others = versions_of(reg, ref.name)
    if others:
        shown = ", ".join(str(v.version) for v in others)
        hint = f"{ref.name} has version(s) {shown}."
    else:
        hint = "List datasets with `mllib data list`; upload one with `mllib data upload PATH --name NAME`."
    raise NotFoundError(f"No dataset {ref}", hint=hint)


def versions_of(reg: Registry, name: str) -> list[Version]:
    rows = reg.query(f"SELECT * FROM datasets WHERE name = ? AND {_LIVE} ORDER BY version", (name,))
    return [Version.from_row(r) for r in rows]


def list_latest(reg: Registry) -> list[tuple[Version, int]]:
    """Each dataset's latest version and how many versions it has, by name."""
    rows = reg.query(
        f"""
        SELECT d.*, (SELECT COUNT(*) FROM datasets c WHERE c.name = d.name AND c.{_LIVE}) AS n
        FROM datasets d
        WHERE d.{_LIVE} AND d.version =
          (SELECT MAX(version) FROM datasets m WHERE m.name = d.name AND m.{_LIVE})
        ORDER BY d.name
        """
    )
    return [(Version.from_row(r), r["n"]) for r in rows]


def mark_deleted(reg: Registry, versions: Iterable[Version]) -> None:
    stamp = now()
    with reg.transaction():
        for v in versions:
            reg.conn.execute(
                "UPDATE datasets SET deleted_at = ? WHERE name = ? AND version = ?",
                (stamp, v.name, v.version),
            )


def all_live(reg: Registry) -> list[Version]:
    """Every version not removed."""
    return [Version.from_row(r) for r in reg.query(f"SELECT * FROM datasets WHERE {_LIVE}")]


def live_digests(reg: Registry) -> set[str]:
    return {r["sha256"] for r in reg.query(f"SELECT DISTINCT sha256 FROM datasets WHERE {_LIVE}")}


def link_run(reg: Registry, run_id: str, links: Iterable[tuple[str, str, int, str]]) -> None:
    """Record which dataset versions a run reads: (env, name, version, sha256) each.

    Joins an open transaction, so a run and its links are recorded together.
    """
    rows = [
        {"run_id": run_id, "env": env, "name": name, "version": version, "sha256": sha256}
        for env, name, version, sha256 in links
    ]
    if not rows:  # most runs read none: no statement (a team server records many at once)
        return
    with reg.transaction():
        reg.db["run_datasets"].insert_all(rows, pk=("run_id", "env"), replace=True)


def run_links(reg: Registry, run_id: str) -> list[dict[str, Any]]:
    """The datasets a run used: env, name, version, sha256 (ordered by env)."""
    return reg.query(
        "SELECT env, name, version, sha256 FROM run_datasets WHERE run_id = ? ORDER BY env",
        (run_id,),
    )


def active_runs_using(reg: Registry, versions: Iterable[Version]) -> list[str]:
    """Ids of queued or running runs that read any of these versions."""
    ids: list[str] = []
    for v in versions:
        rows = reg.query(
            """
            SELECT r.id FROM run_datasets l JOIN runs r ON r.id = l.run_id
            WHERE l.name = ? AND l.version = ? AND r.status IN ('queued', 'running')
            """,
            (v.name, v.version),
        )
        ids += [r["id"] for r in rows if r["id"] not in ids]
    return ids

"""Shell completion of values (`mllib --install-completion` installs it): run ids, model names and
environments. Commands and options complete from the command tree itself.

A completion runs on every Tab press, so each reads only what it needs: the registry of the
project in the current folder, opened read-only with sqlite3 (never created, never migrated,
never waited on), and nothing at all when there is none. A completion never fails the shell:
anything it cannot read completes to nothing.
"""

from __future__ import annotations

import sqlite3
from typing import Any

LIMIT = 50  # candidates offered at once, newest first


def run_ids(incomplete: str) -> list[tuple[str, str]]:
    """Run ids starting with what was typed, newest first, each with its model, action and status."""
    rows = _query(
        "SELECT id, model, action, status FROM runs WHERE substr(id, 1, ?) = ? "
        "ORDER BY created_at DESC LIMIT ?",
        len(incomplete),
        incomplete,
        LIMIT,
    )
    return [(run_id, f"{model} {action}, {status}") for run_id, model, action, status in rows]


def model_refs(incomplete: str) -> list[tuple[str, str]]:
    """What `mllib deploy` takes: model names (the latest version), NAME:VERSION, and run ids."""
    if ":" in incomplete:
        name = incomplete.split(":", 1)[0]
        rows = _query(
            "SELECT version, run_id FROM models WHERE name = ? ORDER BY version DESC LIMIT ?",
            name,
            LIMIT,
        )
        refs = [(f"{name}:{version}", f"run {run_id}") for version, run_id in rows]
        return [ref for ref in refs if ref[0].startswith(incomplete)]
    rows = _query(
        "SELECT name, max(version) FROM models WHERE substr(name, 1, ?) = ? GROUP BY name "
        "ORDER BY name LIMIT ?",
        len(incomplete),
        incomplete,
        LIMIT,
    )
    models = [(name, f"model, latest version {version}") for name, version in rows]
    return models + run_ids(incomplete)


def environments(incomplete: str) -> list[str]:
    """The deployment environments."""
    from mllib.serving.control.settings import ENVS

    return [env for env in ENVS if env.startswith(incomplete)]


def _query(sql: str, *args: Any) -> list[tuple]:
    try:
        from mllib.project import Project

        path = Project.find().registry_path
        if not path.is_file():
            return []
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=0.2)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()
    except Exception:  # a bad mllib.toml, a locked or older registry: nothing to offer
        return []

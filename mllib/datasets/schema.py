"""The datasets feature's registry tables: dataset versions and the runs that used them.
Numbered migrations, never edited once released.
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
    migrations_ = new_set("mllib.datasets")

    @migrations_(name="0001_datasets_run_datasets")
    def initial(db: sqlite_utils.Database) -> None:
        db["datasets"].create(
            {
                "name": str,
                "version": int,
                "sha256": str,  # the manifest's digest: names the content of the version
                "kind": str,  # file or folder
                "entry": str,  # a file version's file name (runs get <cache>/<sha256>/<entry>)
                "size": int,
                "file_count": int,
                "chunk_count": int,
                "source": str,  # the path or URL uploaded (URLs without credentials or query)
                "created_at": str,
                "user": str,
                "deleted_at": str,
            },
            pk=("name", "version"),
            not_null={"sha256", "kind", "size", "created_at"},
        )
        db["datasets"].create_index(["sha256"])
        db["run_datasets"].create(
            {"run_id": str, "env": str, "name": str, "version": int, "sha256": str},
            pk=("run_id", "env"),
            foreign_keys=[("run_id", "runs", "id")],
        )
        db["run_datasets"].create_index(["name", "version"])

    return migrations_

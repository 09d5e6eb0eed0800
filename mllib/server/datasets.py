"""Datasets on a team server: the team's shared catalog, in the server's database, with its
chunks in the server's store (`store/datasets`, where the dispatcher sends agents what they lack).

Datasets are team-wide: every user lists, shows and trains on every dataset, as a team shares
its data; the chunks are content-addressed, so one upload serves everyone. A name belongs to
whoever uploaded its first version: only they (or an admin) add versions to it, so nobody else
changes what `--data train=mnist` (the latest) gives your next run. Runs stay per user: `show`
lists the runs of the caller that read a version (an admin's: everyone's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mllib.datasets import catalog
from mllib.datasets.api import describe
from mllib.datasets.chunkstore import LocalChunkStore
from mllib.datasets.errors import DatasetChangedError, DatasetTooLargeError
from mllib.datasets.format import human_bytes
from mllib.datasets.manifest import ManifestError
from mllib.datasets.materialize import load_manifest
from mllib.datasets.refs import check_name, parse_ref
from mllib.datasets.uploading import record_version, version_dict
from mllib.errors import UsageError
from mllib.registry import Registry
from mllib.server.accounts import User
from mllib.server.submit import Conflict


def admit(reg: Registry, user: User, name: str, size: int | None, limit: int) -> None:
    """Refuse an upload of `size` bytes as dataset `name` before it is sent: a name that is
    someone else's (409), or over the server's `max_dataset_gb` (413)."""
    check_name(name)
    owner = _owner(reg, name)
    if owner not in (None, user.name) and not user.admin:
        raise Conflict(
            f"Dataset {name} belongs to {owner}: only they (or an admin) add versions to it",
            hint="Upload it under another name; you can still train on theirs with --data.",
        )
    if size is not None and size > limit:
        raise DatasetTooLargeError(
            f"{name} ({human_bytes(size)}) is larger than the team server's dataset limit of "
            f"{limit / 1e9:g} GB",
            hint="Ask the server's admin to raise it (`mllib server init --max-dataset-gb N`).",
        )


def record(
    reg: Registry,
    store: LocalChunkStore,
    user: User,
    name: str,
    manifest_sha: str,
    source: str | None,
    limit: int,
) -> dict[str, Any]:
    """Record the version whose manifest (and every chunk) was uploaded; `mllib data upload
    --json`'s keys but the transfer's."""
    admit(reg, user, name, None, limit)
    try:
        manifest = load_manifest(store, manifest_sha)
    except (DatasetChangedError, ManifestError) as exc:
        raise UsageError(exc.message, hint="Upload the manifest's blob first.") from None
    admit(reg, user, name, manifest.size, limit)
    try:
        version, created = record_version(reg, store, name, manifest, source, user.name)
    except DatasetChangedError as exc:
        raise UsageError(
            exc.message, hint="Upload the missing chunks, then record it again."
        ) from None
    versions = len(catalog.versions_of(reg, name))
    return {**version_dict(version), "versions": versions, "created": created}


def list_datasets(reg: Registry) -> list[dict[str, Any]]:
    """Every dataset with its latest version (`mllib data list --json`'s objects)."""
    return [{**version_dict(v), "versions": n} for v, n in catalog.list_latest(reg)]


def show(reg: Registry, store: LocalChunkStore, user: User, ref: str) -> dict[str, Any]:
    """`mllib data show --json` of one version, listing the caller's runs that read it."""
    return describe(reg, store, ref, runs_of=None if user.admin else user.name)


def version(reg: Registry, ref: str) -> dict[str, Any]:
    """One version's `data list` keys and `entry` (what a client binds `--data` to)."""
    found = catalog.get_version(reg, parse_ref(ref))
    return {**version_dict(found), "entry": found.entry}


def remove(
    reg: Registry, store: LocalChunkStore, cache: Path, user: User, ref: str
) -> dict[str, Any]:
    """Remove a version (`NAME@V`) or every version (`NAME`) of a dataset `user` owns (admins:
    any), then free the chunks no other version uses: `mllib data rm --json`'s answer. Refused
    while a queued or running run reads one; another user's runs are counted, not named."""
    from mllib.datasets.api import remove_versions, versions_named

    versions = versions_named(reg, ref)
    owner = _owner(reg, versions[0].name)
    if owner not in (None, user.name) and not user.admin:
        raise Conflict(
            f"Dataset {versions[0].name} belongs to {owner}: only they (or an admin) remove it",
            hint="Ask them (or an admin) to remove it.",
        )

    def in_use(run_ids: list[str]) -> str:
        if user.admin:
            return ", ".join(run_ids)
        marks = ", ".join("?" for _ in run_ids)
        rows = reg.query(f'SELECT id, "user" FROM runs WHERE id IN ({marks})', run_ids)
        mine = [r["id"] for r in rows if r["user"] == user.name]
        others = len(rows) - len(mine)
        return ", ".join([*mine, *([f"{others} of other users"] if others else [])])

    return remove_versions(reg, store, cache, versions, in_use).as_dict()


def _owner(reg: Registry, name: str) -> str | None:
    """Who uploaded the dataset's first version (None: no such dataset)."""
    rows = reg.query('SELECT "user" FROM datasets WHERE name = ? ORDER BY version LIMIT 1', (name,))
    return rows[0]["user"] if rows else None

"""The Python API of datasets; each `mllib data` command is a thin layer over one of these.

>>> result = mllib.datasets.upload("data/images", name="images")  # doctest: +SKIP
>>> result.version.ref, result.stats.bytes_stored  # doctest: +SKIP
('images@1', 104857600)
>>> mllib.datasets.show("images@1")["files"][0]["path"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import getpass
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mllib.datasets import catalog
from mllib.datasets.catalog import Version
from mllib.datasets.chunkstore import ChunkStore, LocalChunkStore, dataset_store
from mllib.datasets.errors import DatasetChangedError, DatasetInUseError
from mllib.datasets.gc import Collected, collect, keep_set, upload_lock
from mllib.datasets.journal import UPLOADS_DIR, pending_uploads
from mllib.datasets.manifest import Manifest
from mllib.datasets.materialize import load_manifest
from mllib.datasets.progress import Progress
from mllib.datasets.refs import parse_ref
from mllib.datasets.settings import DataSettings, cache_dir
from mllib.datasets.uploading import UploadResult, record_version, upload_to, version_dict
from mllib.ranges import POSITIVE
from mllib.registry.db import Registry
from mllib.workspace import Workspace


@dataclass(frozen=True)
class RemoveResult:
    removed: list[Version]
    collected: Collected

    def as_dict(self) -> dict[str, Any]:
        """`mllib data rm --json` (the team server's answer to a removal too)."""
        return {
            "removed": [
                {"name": v.name, "version": v.version, "sha256": v.sha256} for v in self.removed
            ],
            "chunks_freed": self.collected.chunks,
            "bytes_freed": self.collected.bytes,
            "deferred": self.collected.skipped,  # an upload was running: freed later
        }


def upload(
    source: str | Path,
    name: str,
    *,
    ws: Workspace | None = None,
    progress: Progress | None = None,
    max_size_gb: float | None = None,
    allow_private_urls: bool | None = None,
) -> UploadResult:
    """Upload a file, a folder or an http(s) URL as a new version of dataset `name`.

    Only chunks the store lacks are written; an interrupted upload of the same source under the
    same name resumes. The version is recorded only once every chunk is stored and checked. A
    URL may reach only public addresses unless `allow_private_urls` (or `[data]
    allow_private_urls`) says otherwise.
    """
    ws = ws or Workspace.find()
    settings = upload_settings(ws, max_size_gb, allow_private_urls)
    return upload_to(LocalDestination(ws), source, name, settings, progress, state_dirs(ws))


def upload_settings(
    ws: Workspace, max_size_gb: float | None, allow_private_urls: bool | None
) -> DataSettings:
    """`[data]` of mllib.toml with the command line's overrides."""
    settings = DataSettings.from_config(ws.project.config)
    if max_size_gb is not None:
        settings = replace(settings, max_size_gb=POSITIVE.check(max_size_gb, "--max-size-gb"))
    if allow_private_urls is not None:
        settings = replace(settings, allow_private_urls=allow_private_urls)
    return settings


class LocalDestination:
    """This project's dataset store and registry (a Destination)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.store = dataset_store(ws.project.store_path)
        self.journals = self.store.root / UPLOADS_DIR
        self.where = f"the dataset store ({self.store.root})"

    def hold(self) -> contextlib.AbstractContextManager[object]:
        return upload_lock(self.store)

    def admit(self, name: str, size: int | None) -> None:
        """The size cap is checked as the source is read ([data] max_size_gb)."""

    def record(self, name: str, manifest: Manifest, label: str) -> tuple[Version, bool, int]:
        version, created = record_version(
            self.ws.registry, self.store, name, manifest, label, _user()
        )
        return version, created, len(catalog.versions_of(self.ws.registry, name))

    def abandon(self) -> None:
        _collect(self.ws, self.store)


def state_dirs(ws: Workspace) -> list[Path]:
    """mllib's own folders, never part of an upload of the project folder."""
    project = ws.project
    cache = cache_dir(project.config, project.state_dir)
    return [project.state_dir, project.store_path, project.runs_dir, cache]


def _collect(ws: Workspace, store: LocalChunkStore) -> Collected:
    cache = cache_dir(ws.project.config, ws.project.state_dir)
    return collect(store, lambda: catalog.live_digests(ws.registry), cache)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def list_datasets(ws: Workspace | None = None) -> list[dict[str, Any]]:
    """Every dataset with its latest version, by name (the `mllib data list --json` objects)."""
    ws = ws or Workspace.find()
    return [{**version_dict(v), "versions": count} for v, count in catalog.list_latest(ws.registry)]


def pending(ws: Workspace | None = None) -> list[dict[str, Any]]:
    """Uploads cut off before they finished, which the same command resumes."""
    ws = ws or Workspace.find()
    return pending_uploads(dataset_store(ws.project.store_path).root / UPLOADS_DIR)


def show(ref: str, ws: Workspace | None = None) -> dict[str, Any]:
    """One version (`NAME` for the latest, or `NAME@VERSION`) with its files and the runs that used it."""
    ws = ws or Workspace.find()
    return describe(ws.registry, dataset_store(ws.project.store_path), ref)


def describe(
    reg: Registry, store: ChunkStore, ref: str, *, runs_of: str | None = None
) -> dict[str, Any]:
    """`show`'s answer from a registry and its chunk store; `runs_of`: only that user's runs."""
    version = catalog.get_version(reg, parse_ref(ref))
    manifest = load_manifest(store, version.sha256)
    mine, args = ("", ()) if runs_of is None else (' AND r."user" = ?', (runs_of,))
    runs = reg.query(
        "SELECT l.run_id, l.env FROM run_datasets l JOIN runs r ON r.id = l.run_id "
        f"WHERE l.name = ? AND l.version = ?{mine} ORDER BY l.rowid",
        (version.name, version.version, *args),
    )
    return {
        **version_dict(version),
        "versions": [v.version for v in catalog.versions_of(reg, version.name)],
        "files": [
            {"path": f.path, "size": f.size, "sha256": f.sha256, "chunks": len(f.chunks)}
            for f in sorted(manifest.files, key=lambda f: f.path)
        ],
        "runs": runs,
    }


def remove(ref: str, ws: Workspace | None = None) -> RemoveResult:
    """Remove one version (`NAME@VERSION`, `NAME@latest`) or every version (`NAME`), then free the
    chunks and materialised copies nothing else uses. Refused while an active run reads one."""
    ws = ws or Workspace.find()
    store = dataset_store(ws.project.store_path)
    cache = cache_dir(ws.project.config, ws.project.state_dir)
    return remove_versions(ws.registry, store, cache, versions_named(ws.registry, ref))


def versions_named(reg: Registry, ref: str) -> list[Version]:
    """The live versions `ref` names: one (`NAME@VERSION`), or every one of `NAME`."""
    parsed = parse_ref(ref)
    if "@" in ref:
        return [catalog.get_version(reg, parsed)]
    versions = catalog.versions_of(reg, parsed.name)
    if not versions:
        catalog.get_version(reg, parsed)  # raises the NotFoundError with its hint
    return versions


def remove_versions(
    reg: Registry,
    store: LocalChunkStore,
    cache: Path,
    versions: list[Version],
    in_use: Callable[[list[str]], str] = ", ".join,
    wait_s: float = 0.0,
) -> RemoveResult:
    """Mark `versions` removed, then free what no live version needs from `store` and `cache`
    (`wait_s`: collect's). Refused while a queued or running run reads one (`in_use` words
    their ids for the message)."""
    # What stays must be readable before anything goes: a failure leaves every version as it was.
    removed = {(v.name, v.version) for v in versions}
    remaining = {v.sha256 for v in catalog.all_live(reg) if (v.name, v.version) not in removed}
    try:
        keep_set(store, remaining)
    except DatasetChangedError as exc:
        raise DatasetChangedError(f"{exc.message}; nothing was removed", hint=exc.hint) from None
    with reg.transaction():  # no run is recorded as reading one between the check and the mark
        users = catalog.active_runs_using(reg, versions)
        if users:
            raise DatasetInUseError(
                f"{', '.join(v.ref for v in versions)} is in use by active run(s) {in_use(users)}",
                hint="Wait for them to end, or stop them with `mllib runs cancel RUN_ID`.",
            )
        catalog.mark_deleted(reg, versions)
    collected = collect(store, lambda: catalog.live_digests(reg), cache, wait_s)
    return RemoveResult(versions, collected)

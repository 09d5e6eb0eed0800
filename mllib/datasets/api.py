"""The Python API of datasets; each `mllib data` command is a thin layer over one of these.

>>> result = mllib.datasets.upload("data/images", name="images")  # doctest: +SKIP
>>> result.version.ref, result.stats.bytes_stored  # doctest: +SKIP
('images@1', 104857600)
>>> mllib.datasets.show("images@1")["files"][0]["path"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mllib.datasets import catalog
from mllib.datasets.catalog import Version
from mllib.datasets.chunker import TransferStats
from mllib.datasets.chunkstore import LocalChunkStore, dataset_store
from mllib.datasets.download import Download, is_url, redact
from mllib.datasets.errors import (
    DatasetChangedError,
    DatasetInUseError,
    DatasetTooLargeError,
    SourceError,
    too_large,
)
from mllib.datasets.gc import Collected, collect, keep_set, upload_lock
from mllib.datasets.ingest import ingest_files
from mllib.datasets.journal import UPLOADS_DIR, UploadJournal, pending_uploads
from mllib.datasets.manifest import FILE, FileEntry, Manifest
from mllib.datasets.materialize import load_manifest
from mllib.datasets.progress import NoProgress, Progress
from mllib.datasets.refs import check_name, parse_ref
from mllib.datasets.scan import scan
from mllib.datasets.settings import DataSettings, cache_dir
from mllib.errors import MllibError, UsageError
from mllib.ranges import POSITIVE
from mllib.workspace import Workspace


@dataclass(frozen=True)
class UploadResult:
    version: Version
    created: bool  # False: the latest version already held exactly this content
    stats: TransferStats
    versions: int  # how many versions the dataset now has, as `mllib data list` counts them

    def as_dict(self) -> dict[str, Any]:
        """The `mllib data upload --json` object: `mllib data list`'s keys plus the transfer's."""
        return {
            **_version_dict(self.version),
            "versions": self.versions,
            "created": self.created,
            **asdict(self.stats),
        }


@dataclass(frozen=True)
class RemoveResult:
    removed: list[Version]
    collected: Collected


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
    check_name(name)
    settings = DataSettings.from_config(ws.project.config)
    if max_size_gb is not None:
        settings = replace(settings, max_size_gb=POSITIVE.check(max_size_gb, "--max-size-gb"))
    if allow_private_urls is not None:
        settings = replace(settings, allow_private_urls=allow_private_urls)
    store = dataset_store(ws.project.store_path)
    stats = TransferStats()
    try:
        with upload_lock(store):
            src = _source(str(source), name, store, settings, _state_dirs(ws))
            journal = UploadJournal.open(store.root / UPLOADS_DIR, name, src.key, src.header)
            try:
                entries = src.ingest(journal, progress or NoProgress(), stats)
                manifest = Manifest(src.kind, tuple(entries))
                version, created = _record(ws, store, name, manifest, src.label)
            except BaseException as exc:
                if _permanent(exc):
                    journal.discard()
                else:
                    journal.close()  # kept: the same command resumes from it
                raise
            journal.discard()
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise MllibError(
            f"The disk holding the dataset store ({store.root}) is full",
            hint="Free space (`mllib data rm` unused datasets), then run the same command again "
            "to resume.",
        ) from None
    except BaseException as exc:
        if _permanent(exc):
            with contextlib.suppress(DatasetChangedError):  # the failure to report is `exc`
                _collect(ws, store)  # leave nothing behind of an upload that can never succeed
        raise
    return UploadResult(
        version, created, stats, len(catalog.versions_of(ws.registry, version.name))
    )


@dataclass(frozen=True)
class _Source:
    label: str  # recorded as the version's source: a path, or a URL without secrets
    key: str  # what identifies the upload for resuming (with the name)
    header: dict[str, str]
    kind: str
    ingest: Callable[[UploadJournal, Progress, TransferStats], list[FileEntry]]


def _state_dirs(ws: Workspace) -> list[Path]:
    """mllib's own folders, never part of an upload of the project folder."""
    project = ws.project
    cache = cache_dir(project.config, project.state_dir)
    return [project.state_dir, project.store_path, project.runs_dir, cache]


def _source(
    text: str, name: str, store: LocalChunkStore, settings: DataSettings, skip: list[Path]
) -> _Source:
    """What is uploaded; a local source is scanned and checked against the size cap here."""
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text) and not is_url(text):
        raise UsageError(
            f"{text.split('://')[0]}:// URLs are not supported",
            hint="Upload an http(s) URL, a file or a folder.",
        )
    if is_url(text):
        label = redact(text)

        def fetch(journal: UploadJournal, progress: Progress, stats: TransferStats):
            download = Download(
                text, store, journal, progress, stats, settings, f"Downloading {name}"
            )
            return [download.run()]

        url_id = hashlib.sha256(text.encode()).hexdigest()
        return _Source(label, text, {"source": label, "source_id": url_id}, FILE, fetch)
    path = Path(text).expanduser()
    kind, files = scan(path, skip)
    total = sum(f.size for f in files)
    if total > settings.max_size:
        raise too_large(str(path), total, settings.max_size)
    label = str(path.resolve())

    def read(journal: UploadJournal, progress: Progress, stats: TransferStats):
        return ingest_files(store, files, journal, progress, stats, f"Uploading {name}")

    return _Source(label, label, {"source": label}, kind, read)


def _permanent(exc: BaseException) -> bool:
    """Failures that running the same command again cannot fix: nothing of them is kept."""
    if isinstance(exc, SourceError):
        return not exc.resumable
    return isinstance(exc, DatasetTooLargeError)


def _record(
    ws: Workspace, store: LocalChunkStore, name: str, manifest: Manifest, label: str
) -> tuple[Version, bool]:
    """Check every chunk is stored whole, store the manifest, then record the version."""
    _check_stored(store, manifest)
    raw = manifest.to_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    store.put(raw, digest)
    row = {
        "name": name,
        "sha256": digest,
        "kind": manifest.kind,
        "entry": manifest.files[0].path if manifest.kind == FILE else None,
        "size": manifest.size,
        "file_count": len(manifest.files),
        "chunk_count": len(manifest.chunk_digests),
        "source": label,
        "user": _user(),
    }
    return catalog.add_version(ws.registry, row)


def _check_stored(store: LocalChunkStore, manifest: Manifest) -> None:
    expected: dict[str, int] = {}
    for entry in manifest.files:
        for i, digest in enumerate(entry.chunks):
            expected[digest] = min(manifest.chunk_size, entry.size - i * manifest.chunk_size)
    for digest, size in expected.items():
        if store.size(digest) != size:
            raise DatasetChangedError(
                f"Chunk {digest[:16]} is missing or incomplete in the dataset store",
                hint="Run the same upload again; it stores what is missing.",
            )


def _collect(ws: Workspace, store: LocalChunkStore) -> Collected:
    cache = cache_dir(ws.project.config, ws.project.state_dir)
    return collect(store, catalog.live_digests(ws.registry), cache)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def list_datasets(ws: Workspace | None = None) -> list[dict[str, Any]]:
    """Every dataset with its latest version, by name (the `mllib data list --json` objects)."""
    ws = ws or Workspace.find()
    return [
        {**_version_dict(v), "versions": count} for v, count in catalog.list_latest(ws.registry)
    ]


def pending(ws: Workspace | None = None) -> list[dict[str, Any]]:
    """Uploads cut off before they finished, which the same command resumes."""
    ws = ws or Workspace.find()
    return pending_uploads(dataset_store(ws.project.store_path).root / UPLOADS_DIR)


def show(ref: str, ws: Workspace | None = None) -> dict[str, Any]:
    """One version (`NAME` for the latest, or `NAME@VERSION`) with its files and the runs that used it."""
    ws = ws or Workspace.find()
    version = catalog.get_version(ws.registry, parse_ref(ref))
    manifest = load_manifest(dataset_store(ws.project.store_path), version.sha256)
    runs = ws.registry.query(
        "SELECT run_id, env FROM run_datasets WHERE name = ? AND version = ? ORDER BY rowid",
        (version.name, version.version),
    )
    return {
        **_version_dict(version),
        "versions": [v.version for v in catalog.versions_of(ws.registry, version.name)],
        "files": [
            {"path": f.path, "size": f.size, "sha256": f.sha256, "chunks": len(f.chunks)}
            for f in sorted(manifest.files, key=lambda f: f.path)
        ],
        "runs": runs,
    }


def _version_dict(v: Version) -> dict[str, Any]:
    return {
        "name": v.name,
        "version": v.version,
        "ref": v.ref,
        "sha256": v.sha256,
        "kind": v.kind,
        "size": v.size,
        "file_count": v.file_count,
        "chunk_count": v.chunk_count,
        "source": v.source,
        "created_at": v.created_at,
        "user": v.user,
    }


def remove(ref: str, ws: Workspace | None = None) -> RemoveResult:
    """Remove one version (`NAME@VERSION`, `NAME@latest`) or every version (`NAME`), then free the
    chunks and materialised copies nothing else uses. Refused while an active run reads one."""
    ws = ws or Workspace.find()
    parsed = parse_ref(ref)
    if "@" in ref:
        versions = [catalog.get_version(ws.registry, parsed)]
    else:
        versions = catalog.versions_of(ws.registry, parsed.name)
        if not versions:
            catalog.get_version(ws.registry, parsed)  # raises the NotFoundError with its hint
    users = catalog.active_runs_using(ws.registry, versions)
    if users:
        raise DatasetInUseError(
            f"{', '.join(v.ref for v in versions)} is in use by active run(s) {', '.join(users)}",
            hint="Wait for them to end, or stop them with `mllib runs cancel RUN_ID`.",
        )
    store = dataset_store(ws.project.store_path)
    # What stays must be readable before anything goes: a failure leaves every version as it was.
    removed = {(v.name, v.version) for v in versions}
    remaining = {
        v.sha256 for v in catalog.all_live(ws.registry) if (v.name, v.version) not in removed
    }
    try:
        keep_set(store, remaining)
    except DatasetChangedError as exc:
        raise DatasetChangedError(f"{exc.message}; nothing was removed", hint=exc.hint) from None
    catalog.mark_deleted(ws.registry, versions)
    return RemoveResult(versions, _collect(ws, store))

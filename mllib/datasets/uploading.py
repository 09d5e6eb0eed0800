"""The one upload pipeline: a file, folder or URL cut into chunks, only those its destination
lacks sent, then the version recorded. A Destination says where: this project's store and
registry (mllib.datasets.api), or a team server (mllib.client.datasets), which differ only in
their chunk store, their journals' folder and how a version is recorded.

>>> upload_to(LocalDestination(ws), "data/images", "images", settings, progress, skip)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from mllib.datasets.catalog import Version, add_version
from mllib.datasets.chunker import TransferStats
from mllib.datasets.chunkstore import ChunkStore
from mllib.datasets.download import Download, is_url, redact
from mllib.datasets.errors import (
    ChunksMissingError,
    DatasetChangedError,
    DatasetTooLargeError,
    SourceError,
    too_large,
)
from mllib.datasets.ingest import ingest_files
from mllib.datasets.journal import UploadJournal
from mllib.datasets.manifest import FILE, FileEntry, Manifest
from mllib.datasets.progress import NoProgress, Progress
from mllib.datasets.refs import check_name
from mllib.datasets.scan import scan
from mllib.datasets.settings import DataSettings
from mllib.errors import MllibError, UsageError
from mllib.registry.db import Registry


@dataclass(frozen=True)
class UploadResult:
    version: Version
    created: bool  # False: the latest version already held exactly this content
    stats: TransferStats
    versions: int  # how many versions the dataset now has, as `mllib data list` counts them

    def as_dict(self) -> dict[str, Any]:
        """The `mllib data upload --json` object: `mllib data list`'s keys plus the transfer's."""
        return {
            **version_dict(self.version),
            "versions": self.versions,
            "created": self.created,
            **asdict(self.stats),
        }


class Destination(Protocol):
    """Where an upload's chunks go and its version is recorded."""

    @property
    def store(self) -> ChunkStore:
        """Where the chunks (and the manifest) go."""

    @property
    def journals(self) -> Path:
        """Where interrupted uploads' journals are kept, for resuming."""

    @property
    def where(self) -> str:
        """For messages: "the dataset store (PATH)", "the team server URL"."""

    def hold(self) -> contextlib.AbstractContextManager[object]:
        """Held for the whole upload (a local store's collection waits for it)."""

    def admit(self, name: str, size: int | None) -> None:
        """Refuse, before anything is sent, what the destination would not record."""

    def record(self, name: str, manifest: Manifest, label: str) -> tuple[Version, bool, int]:
        """Record the version once every chunk is there: (version, created, versions count)."""

    def abandon(self) -> None:
        """An upload that can never succeed: free what it left behind."""


def upload_to(
    dest: Destination,
    source: str | Path,
    name: str,
    settings: DataSettings,
    progress: Progress | None,
    skip: list[Path],
) -> UploadResult:
    """Upload a file, a folder or an http(s) URL as a new version of dataset `name` in `dest`.

    Only chunks the destination lacks are sent; an interrupted upload of the same source under
    the same name resumes. The version is recorded only once every chunk is stored and checked.
    """
    check_name(name)
    stats = TransferStats()
    try:
        with dest.hold():
            src = _source(str(source), name, dest.store, settings, skip)
            dest.admit(name, src.size)
            journal = UploadJournal.open(dest.journals, name, src.key, src.header)
            try:
                version, created, versions = _ingest_and_record(
                    dest, src, name, journal, progress or NoProgress(), stats
                )
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
            f"The disk holding {dest.where} is full",
            hint="Free space (`mllib data rm` unused datasets), then run the same command again "
            "to resume.",
        ) from None
    except BaseException as exc:
        if _permanent(exc):
            with contextlib.suppress(DatasetChangedError):  # the failure to report is `exc`
                dest.abandon()  # leave nothing behind of an upload that can never succeed
        raise
    return UploadResult(version, created, stats, versions)


def _ingest_and_record(
    dest: Destination,
    src: _Source,
    name: str,
    journal: UploadJournal,
    progress: Progress,
    stats: TransferStats,
) -> tuple[Version, bool, int]:
    """Store the source's chunks, then record the version. Chunks the destination lost
    meanwhile (a damaged disk; a server whose lease on them ran out) are sent again, once."""
    entries = src.ingest(journal, progress, stats)
    try:
        return dest.record(name, Manifest(src.kind, tuple(entries)), src.label)
    except ChunksMissingError as exc:
        progress.note(
            f"{len(exc.missing)} chunk(s) went missing from {dest.where} before {name} was "
            "recorded; sending them again"
        )
    again = TransferStats()  # what the second pass sends is counted as sent, nothing else
    entries = src.ingest(journal, progress, again)
    stats.chunks_stored += again.chunks_stored
    stats.bytes_stored += again.bytes_stored
    return dest.record(name, Manifest(src.kind, tuple(entries)), src.label)


@dataclass(frozen=True)
class _Source:
    label: str  # recorded as the version's source: a path, or a URL without secrets
    key: str  # what identifies the upload for resuming (with the name)
    header: dict[str, str]
    kind: str
    size: int | None  # a local source's total, known before anything is sent
    ingest: Callable[[UploadJournal, Progress, TransferStats], list[FileEntry]]


def _source(
    text: str, name: str, store: ChunkStore, settings: DataSettings, skip: list[Path]
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
        return _Source(label, text, {"source": label, "source_id": url_id}, FILE, None, fetch)
    path = Path(text).expanduser()
    kind, files = scan(path, skip)
    total = sum(f.size for f in files)
    if total > settings.max_size:
        raise too_large(str(path), total, settings.max_size)
    label = str(path.resolve())

    def read(journal: UploadJournal, progress: Progress, stats: TransferStats):
        return ingest_files(store, files, journal, progress, stats, f"Uploading {name}")

    return _Source(label, label, {"source": label}, kind, total, read)


def _permanent(exc: BaseException) -> bool:
    """Failures that running the same command again cannot fix: nothing of them is kept."""
    if isinstance(exc, SourceError):
        return not exc.resumable
    return isinstance(exc, DatasetTooLargeError)


def record_version(
    reg: Registry, store: ChunkStore, name: str, manifest: Manifest, label: str | None, user: str
) -> tuple[Version, bool]:
    """Check every chunk is stored whole, store the manifest, then record the version (a new
    one, unless the latest already holds this content)."""
    check_stored(store, manifest)
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
        "user": user,
    }
    return add_version(reg, row)


def check_stored(store: ChunkStore, manifest: Manifest, where: str = "the dataset store") -> None:
    """Raise ChunksMissingError naming every chunk of `manifest` not stored whole in `store`."""
    expected: dict[str, int] = {}
    for entry in manifest.files:
        for i, digest in enumerate(entry.chunks):
            expected[digest] = min(manifest.chunk_size, entry.size - i * manifest.chunk_size)
    missing = [digest for digest, size in expected.items() if store.size(digest) != size]
    if missing:
        what = f"Chunk {missing[0][:16]} is" if len(missing) == 1 else f"{len(missing)} chunks are"
        raise ChunksMissingError(
            f"{what} missing or incomplete in {where}",
            missing,
            hint="Run the same upload again; it sends what is missing.",
        )


def version_dict(v: Version) -> dict[str, Any]:
    """A version as `mllib data list --json` prints it."""
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

"""Datasets on a team server: the team's shared catalog, in the server's database, with its
chunks in the server's store (`store/datasets`, where the dispatcher sends agents what they lack).

Datasets are team-wide: every user lists, shows and trains on every dataset, as a team shares
its data; the chunks are content-addressed, so one upload serves everyone. A name belongs to
whoever uploaded its first version: only they (or an admin) add versions to it, so nobody else
changes what `--data train=mnist` (the latest) gives your next run. Runs stay per user: `show`
lists the runs of the caller that read a version (an admin's: everyone's).

An upload holds a lease (mllib.datasets.leases) from its start to its version's record: every
chunk the server says it has, or receives, is pinned there first, so a `data rm` racing the upload
cannot free it; the record checks every chunk is there (409 naming those that are not, which the
client sends again) before the version is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mllib.datasets import catalog
from mllib.datasets.api import describe
from mllib.datasets.chunkstore import LocalChunkStore
from mllib.datasets.errors import DatasetChangedError, DatasetTooLargeError
from mllib.datasets.format import human_bytes
from mllib.datasets.gc import Collected, collect, upload_lock
from mllib.datasets.leases import Leases
from mllib.datasets.manifest import Manifest, ManifestError
from mllib.datasets.materialize import load_manifest
from mllib.datasets.refs import check_name, parse_ref
from mllib.datasets.uploading import check_stored, record_version, version_dict
from mllib.errors import UsageError
from mllib.registry import Registry
from mllib.server.accounts import User
from mllib.server.submit import Conflict

COLLECT_WAIT_S = 5.0  # uploads' requests hold the store's lock briefly: a removal waits them out


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


def start_upload(
    reg: Registry,
    store: LocalChunkStore,
    user: User,
    name: str,
    size: int | None,
    limit: int,
    expire_s: float,
) -> dict[str, Any]:
    """Admit an upload (`admit`) and give it a lease: `upload`, the id its requests carry, and
    `expire_s`, how long the lease outlives the upload's last request."""
    admit(reg, user, name, size, limit)
    with upload_lock(store):  # a collection never sees the lease half-written
        upload = Leases.of(store).start(name, user.name, expire_s)
    return {"upload": upload, "expire_s": expire_s}


def lacking(store: LocalChunkStore, user: User, shas: list[str], upload: str | None) -> list[str]:
    """The chunks among `shas` the server lacks, once all of them are pinned to `upload`: those
    it has stay until the upload records its version (or its lease expires)."""
    with upload_lock(store):
        _pin(store, user, upload, shas)
        return [s for s in dict.fromkeys(shas) if not store.blobs.has(s)]


def receive(
    store: LocalChunkStore, user: User, sha256: str, data: bytes, upload: str | None
) -> None:
    """Store a chunk (or manifest) whose bytes hash to `sha256`, pinned to `upload` first."""
    with upload_lock(store):
        _pin(store, user, upload, [sha256])
        if not store.blobs.has(sha256, len(data)):
            store.blobs.put_bytes(data, sha256=sha256)


def record(
    reg: Registry,
    store: LocalChunkStore,
    user: User,
    name: str,
    manifest_sha: str,
    source: str | None,
    limit: int,
    upload: str | None = None,
    expire_s: float = 3600.0,
) -> dict[str, Any]:
    """Record the version whose manifest (and every chunk) was uploaded; `mllib data upload
    --json`'s keys but the transfer's. The manifest and its chunks are pinned (to `upload`'s
    lease, else to one of this request's own) and checked present before the version is
    written: ChunksMissingError (409) names any that are not."""
    admit(reg, user, name, None, limit)
    leases = Leases.of(store)
    with upload_lock(store):
        lease = upload if upload and leases.pin(upload, user.name, []) else None
        lease = lease or leases.start(name, user.name, expire_s)
        try:
            leases.pin(lease, user.name, [manifest_sha])
            manifest = _manifest(store, manifest_sha)
            admit(reg, user, name, manifest.size, limit)
            leases.pin(lease, user.name, manifest.chunk_digests)
            check_stored(store, manifest, "the team server")
        except BaseException:
            if lease != upload:
                leases.finish(lease)
            raise
    version, created = record_version(reg, store, name, manifest, source, user.name)
    leases.finish(lease)  # the version holds its chunks now
    versions = len(catalog.versions_of(reg, name))
    return {**version_dict(version), "versions": versions, "created": created}


def _manifest(store: LocalChunkStore, digest: str) -> Manifest:
    try:
        return load_manifest(store, digest)
    except (DatasetChangedError, ManifestError) as exc:
        raise UsageError(exc.message, hint="Upload the manifest's blob first.") from None


def _pin(store: LocalChunkStore, user: User, upload: str | None, shas: list[str]) -> None:
    """Pin `shas` to the caller's upload (none: a client that holds no lease, pinned nothing)."""
    if upload is not None and not Leases.of(store).pin(upload, user.name, shas):
        raise Conflict(
            f"No upload {upload[:32]!r} of yours is in progress on this server (an upload "
            "unused for longer than the server's upload_expiry_h expires)",
            hint="Run the same `mllib data upload` again: it sends only what the server lacks.",
        )


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

    return remove_versions(reg, store, cache, versions, in_use, COLLECT_WAIT_S).as_dict()


def collect_abandoned(reg: Registry, store: LocalChunkStore, cache: Path) -> Collected | None:
    """Free what only abandoned uploads kept (their leases unused past `upload_expiry_h`), as
    a removal's collection would: None when no lease has expired (nothing is scanned)."""
    if not Leases.of(store).any_expired():
        return None
    return collect(store, lambda: catalog.live_digests(reg), cache, COLLECT_WAIT_S)


def _owner(reg: Registry, name: str) -> str | None:
    """Who uploaded the dataset's first version (None: no such dataset)."""
    rows = reg.query('SELECT "user" FROM datasets WHERE name = ? ORDER BY version LIMIT 1', (name,))
    return rows[0]["user"] if rows else None

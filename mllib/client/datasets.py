"""Datasets on the team server, from this machine: `mllib data upload/list/show` and the
versions `--data` names for a run queued there.

An upload is the local one (mllib.datasets.uploading: the same chunking, resuming and --json)
with the server as its destination: each chunk is hashed here and sent only when the server
lacks it, so nothing is sent twice, by you or by a teammate who uploaded the same bytes.

>>> upload("data/images", "images").version.ref  # doctest: +SKIP
'images@1'
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mllib.client.http import Server, ServerError
from mllib.datasets.api import state_dirs, upload_settings
from mllib.datasets.binding import Lookup
from mllib.datasets.catalog import Version
from mllib.datasets.errors import ChunksMissingError
from mllib.datasets.manifest import Manifest
from mllib.datasets.progress import Progress
from mllib.datasets.refs import DatasetRef, parse_ref
from mllib.datasets.uploading import UploadResult, upload_to
from mllib.errors import NotFoundError
from mllib.workspace import Workspace

MISSING_BATCH = 10_000  # digests per question (the server takes up to 100,000)
CHUNKS = "/api/v1/datasets/chunks"


class ServerChunkStore:
    """The server's dataset chunks as a ChunkStore (mllib.datasets.chunkstore). With `upload`
    (an upload's id), what the server has or receives is kept for that upload until it is
    recorded, whatever `mllib data rm` frees meanwhile."""

    def __init__(self, server: Server, upload: str | None = None) -> None:
        self.server = server
        self.upload = upload

    def missing(self, digests: Iterable[str]) -> list[str]:
        wanted = list(dict.fromkeys(digests))
        lacking: list[str] = []
        lease = {"upload": self.upload} if self.upload else {}
        for i in range(0, len(wanted), MISSING_BATCH):
            batch = wanted[i : i + MISSING_BATCH]
            lacking += self.server.post(f"{CHUNKS}/missing", {"shas": batch, **lease})["missing"]
        return lacking

    def size(self, digest: str) -> int | None:
        try:
            return len(self.read(digest))
        except FileNotFoundError:
            return None

    def put(self, data: bytes | memoryview, digest: str) -> bool:
        if not self.missing([digest]):
            return False
        lease = {"upload": self.upload} if self.upload else {}
        self.server.request("PUT", f"{CHUNKS}/{digest}", content=bytes(data), params=lease)
        return True

    def read(self, digest: str) -> bytes:
        try:
            return bytes(self.server.request("GET", f"{CHUNKS}/{digest}").content)
        except NotFoundError:
            raise FileNotFoundError(digest) from None


class ServerDestination:
    """The team server as an upload's Destination (mllib.datasets.uploading)."""

    def __init__(self, server: Server, ws: Workspace) -> None:
        self.server = server
        self.store = ServerChunkStore(server)
        url_id = hashlib.sha256(server.url.encode()).hexdigest()[:16]
        self.journals = ws.project.state_dir / "server-uploads" / url_id
        self.where = f"the team server {server.url}"

    def hold(self) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()

    def admit(self, name: str, size: int | None) -> None:
        """Refused (409, 413) before anything is sent; else the upload's lease starts."""
        started = self.server.post("/api/v1/datasets/uploads", {"name": name, "size": size})
        self.store.upload = started["upload"]

    def record(self, name: str, manifest: Manifest, label: str) -> tuple[Version, bool, int]:
        raw = manifest.to_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        self.store.put(raw, digest)
        body = {"name": name, "manifest": digest, "source": label, "upload": self.store.upload}
        try:
            data = self.server.post("/api/v1/datasets", body)
        except ServerError as exc:
            missing = (exc.details or {}).get("missing")
            if exc.status == 409 and isinstance(missing, list):
                raise ChunksMissingError(exc.message, missing, hint=exc.hint) from None
            raise
        version = Version.from_row({"entry": None, **data})  # entry: only runs need it
        return version, bool(data["created"]), int(data["versions"])

    def abandon(self) -> None:
        """Nothing to free: the server keeps chunks (content-addressed, shared by the team)
        until a collection after the upload's lease expires."""


def upload(
    source: str | Path,
    name: str,
    *,
    ws: Workspace | None = None,
    progress: Progress | None = None,
    max_size_gb: float | None = None,
    allow_private_urls: bool | None = None,
) -> UploadResult:
    """Upload a file, a folder or an http(s) URL to the team server as a new version of dataset
    `name`, sending only the chunks it lacks (mllib.datasets.upload, with the server's store)."""
    ws = ws or Workspace.find()
    settings = upload_settings(ws, max_size_gb, allow_private_urls)
    server = Server.connect(ws.project.config)
    try:
        dest = ServerDestination(server, ws)
        return upload_to(dest, source, name, settings, progress, state_dirs(ws))
    finally:
        server.close()


def list_datasets(server: Server) -> list[dict[str, Any]]:
    """The team's datasets with their latest version (`mllib data list --json`'s objects)."""
    rows: list[dict[str, Any]] = server.get("/api/v1/datasets")
    return rows


def show(server: Server, ref: str) -> dict[str, Any]:
    """One version with its files and your runs that read it (`mllib data show --json`)."""
    parse_ref(ref)  # a usage error here, not a request
    data: dict[str, Any] = server.get(f"/api/v1/datasets/{quote(ref.strip(), safe='@')}")
    return data


def remove(server: Server, ref: str) -> dict[str, Any]:
    """Remove a version (`NAME@V`) or every version (`NAME`) on the server: `mllib data rm
    --json`'s answer (`removed`, `chunks_freed`, `bytes_freed`, `deferred`)."""
    parse_ref(ref)  # a usage error here, not a request
    data: dict[str, Any] = server.request(
        "DELETE", f"/api/v1/datasets/{quote(ref.strip(), safe='@')}", retry=False
    ).json()
    return data


def lookup(config: Any) -> Lookup:
    """How a run queued on the server finds the versions `--data` names: in the server's catalog."""

    def find(ref: DatasetRef) -> Version:
        server = Server.connect(config)
        try:
            path = f"/api/v1/datasets/{quote(str(ref), safe='@')}"
            data = server.get(path, params={"files": False})
        finally:
            server.close()
        return Version.from_row(data)

    return find

"""The team server's dataset routes: an upload's lease, its chunks and its record, the catalog
(list, show, remove). Each is a thin layer over mllib.server.datasets.

An upload goes: POST /datasets/uploads (admitted, given a lease), POST /datasets/chunks/missing
and PUT /datasets/chunks/SHA256 with its `upload` id (what the server has, or receives, is pinned
to the lease), then POST /datasets (recorded once every chunk is there; 409 with `missing`
otherwise).
"""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations at run time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from mllib.errors import NotFoundError
from mllib.server import api
from mllib.server.receiving import check_shas, is_sha256, read_blob

if TYPE_CHECKING:
    from fastapi import FastAPI

    from mllib.server.context import ServerContext


def add_routes(app: "FastAPI", ctx: "ServerContext", who: Callable[..., Any], prefix: str) -> None:
    """The datasets' routes on `app`; `who` is the app's dependency giving the request's user."""
    from fastapi import Depends, Path, Query, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import Response

    from mllib.server import datasets

    Who = Annotated[Any, Depends(who)]
    Ref = Annotated[str, Path(max_length=120)]
    Upload = Annotated[str | None, Query(pattern=api.UPLOAD_ID, description="The upload's id")]

    def limit() -> int:
        return int(ctx.settings.max_dataset_gb * 1e9)

    def expire_s() -> float:
        return ctx.settings.upload_expiry_h * 3600

    @app.post(
        f"{prefix}/datasets/uploads",
        response_model=api.UploadStarted,
        status_code=201,
        tags=["datasets"],
        responses={409: {"model": api.Error}, 413: {"model": api.Error}},
    )
    def start_upload(body: api.DatasetCheck, user: Who) -> dict[str, Any]:
        """Start an upload of `size` bytes as dataset `name` (refused as /datasets/check
        refuses): its id, which its requests carry so that what it relies on is kept."""
        with ctx.registry() as reg:
            return datasets.start_upload(
                reg, ctx.datasets, user, body.name, body.size, limit(), expire_s()
            )

    @app.post(f"{prefix}/datasets/chunks/missing", response_model=api.Missing, tags=["datasets"])
    def missing_chunks(body: api.ChunkShas, user: Who) -> api.Missing:
        """Which of these dataset chunks (and manifests) the server lacks: an upload sends only
        those. With `upload`, those it has are kept for that upload until it is recorded."""
        check_shas(body.shas)
        return api.Missing(missing=datasets.lacking(ctx.datasets, user, body.shas, body.upload))

    @app.put(f"{prefix}/datasets/chunks/{{sha256}}", status_code=204, tags=["datasets"])
    async def put_chunk(
        sha256: str, request: Request, user: Who, upload: Upload = None
    ) -> Response:
        """Store one dataset chunk or manifest; its body must hash to `sha256`."""
        data = await read_blob(request.stream(), sha256, ctx.settings.max_upload_mb)
        await run_in_threadpool(datasets.receive, ctx.datasets, user, sha256, data, upload)
        return Response(status_code=204)

    @app.get(f"{prefix}/datasets/chunks/{{sha256}}", tags=["datasets"])
    def get_chunk(sha256: str, user: Who) -> Response:
        """One stored chunk (an interrupted URL upload reads its chunks back to resume)."""
        if not is_sha256(sha256) or not ctx.datasets.blobs.has(sha256):
            raise NotFoundError(f"No chunk {sha256[:80]!r} on this server")
        return Response(ctx.datasets.read(sha256), media_type="application/octet-stream")

    @app.post(f"{prefix}/datasets/check", status_code=204, tags=["datasets"])
    def check_dataset(body: api.DatasetCheck, user: Who) -> Response:
        """Whether an upload of `size` bytes as dataset `name` would be recorded: 409 when the
        name is another user's, 413 over the server's `max_dataset_gb`."""
        with ctx.registry() as reg:
            datasets.admit(reg, user, body.name, body.size, limit())
        return Response(status_code=204)

    @app.post(
        f"{prefix}/datasets",
        response_model=api.DatasetRecorded,
        status_code=201,
        tags=["datasets"],
        responses={409: {"model": api.ChunksMissing}, 413: {"model": api.Error}},
    )
    def record_dataset(body: api.DatasetRecord, response: Response, user: Who) -> dict[str, Any]:
        """Record a version whose manifest and chunks are uploaded (200 and `created`: false
        when the latest version already holds this content); 409 with `missing` when chunks
        are not there (send them, then record again)."""
        with ctx.registry() as reg:
            data = datasets.record(
                reg, ctx.datasets, user, body.name, body.manifest, body.source, limit(),
                body.upload, expire_s(),
            )  # fmt: skip
        response.status_code = 201 if data["created"] else 200
        return data

    @app.get(f"{prefix}/datasets", response_model=list[api.DatasetListed], tags=["datasets"])
    def list_datasets(user: Who) -> list[dict[str, Any]]:
        """The team's datasets, each with its latest version (`mllib data list --json`)."""
        with ctx.registry() as reg:
            return datasets.list_datasets(reg)

    @app.get(f"{prefix}/datasets/{{ref}}", tags=["datasets"])
    def show_dataset(ref: Ref, user: Who, files: bool = True) -> dict[str, Any]:
        """One version (`NAME`: the latest, or `NAME@VERSION`): `mllib data show --json`, with
        the caller's runs that read it; `files=false`: its `data list` keys only."""
        with ctx.registry() as reg:
            if not files:
                return datasets.version(reg, ref)
            return datasets.show(reg, ctx.datasets, user, ref)

    @app.delete(
        f"{prefix}/datasets/{{ref}}", tags=["datasets"], responses={409: {"model": api.Error}}
    )
    def remove_dataset(ref: Ref, user: Who) -> dict[str, Any]:
        """Remove a version (`NAME@VERSION`) or every version (`NAME`) of a dataset you
        uploaded first (admins: any), freeing chunks no other version (nor an upload in
        progress) uses (`mllib data rm --json`); 400 while a queued or running run reads one,
        409 another user's dataset."""
        from mllib.datasets.settings import cache_dir

        project = ctx.project
        with ctx.registry() as reg:
            cache = cache_dir(project.config, project.state_dir)
            return datasets.remove(reg, ctx.datasets, cache, user, ref)

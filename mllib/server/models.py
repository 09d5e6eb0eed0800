"""The team server's model versions (`mllib models list|show` with a server configured): those
its agents' runs made, with their evaluations there, so a version's trend holds the evaluations
the server's schedules ran (mllib.server.schedules). Versions are the team's: anyone logged in
reads them, as `mllib evaluate --model NAME --every` evaluates them, and anyone may move an alias
(`mllib models alias NAME:3 prod`) or record a deployment (`mllib deploy`, which a client sends:
mllib.server.deployments); a schedule of `NAME@prod` follows the later of the two from its next
run."""

# no `from __future__ import annotations`: FastAPI reads the routes' annotations at run time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from mllib.metric_values import json_safe

if TYPE_CHECKING:
    from fastapi import FastAPI

    from mllib.server.context import ServerContext


class AliasBody(BaseModel):
    """`mllib models alias REF ALIAS` (`remove`: `--rm`, REF as NAME@ALIAS or NAME and ALIAS)."""

    model_config = ConfigDict(extra="forbid")
    ref: str = Field(..., max_length=200, examples=["iris:3"])
    alias: str | None = Field(None, max_length=64, examples=["prod"])
    remove: bool = False


class DeploymentBody(BaseModel):
    """A deployment that went live on a client's staging or prod (`mllib deploy`, `rollback`,
    a finished `promote`), or a stop (`mllib deploy stop`): its id makes a retry harmless."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(..., min_length=1, max_length=64, examples=["d3k9x0a7b2c1"])
    model: str = Field(..., min_length=1, max_length=200, examples=["iris"])
    version: int | None = Field(None, ge=1, le=2**62, examples=[3])
    run_id: str = Field(..., min_length=1, max_length=64)
    env: str = Field(..., max_length=32, examples=["prod"])
    action: str = Field("deploy", max_length=32, examples=["deploy", "rollback", "promote", "stop"])
    deployed_at: str = Field(..., max_length=40, examples=["2026-12-07T22:00:00.000000Z"])
    # what it serves, by content (the server finds its own version by these, never by number)
    model_sha256: str | None = Field(None, max_length=64, pattern="^[0-9a-f]{64}$")
    code_hash: str | None = Field(None, max_length=64, pattern="^[0-9a-f]{64}$")


def add_routes(app: "FastAPI", ctx: "ServerContext", who: Callable[..., Any], prefix: str) -> None:
    """The models' routes on `app`; `who` is the app's dependency giving the request's user."""
    from fastapi import Depends, Path

    from mllib.models import catalog

    Who = Annotated[Any, Depends(who)]

    @app.get(f"{prefix}/models", tags=["models"])
    def list_models(user: Who) -> list[dict[str, Any]]:
        """Every model with a version on this server (`mllib models list --json`)."""
        with ctx.registry() as reg:
            return list(json_safe(catalog.list_models(ctx.workspace(reg))))

    @app.get(f"{prefix}/models/{{ref}}", tags=["models"])
    def show_model(ref: Annotated[str, Path(max_length=200)], user: Who) -> dict[str, Any]:
        """`NAME`: a model and its versions, and what clients' staging and prod serve of it
        (`served`); `NAME:VERSION` or `NAME@ALIAS`: that version with its params, metrics and
        evaluation history (`mllib models show --json`)."""
        from mllib.server.deployments import serving

        with ctx.registry() as reg:
            shown = dict(json_safe(catalog.show(ctx.workspace(reg), ref)))
            if "versions" in shown:  # what clients' staging and prod serve of it
                shown["served"] = serving(reg, shown["name"])
            return shown

    @app.get(f"{prefix}/models/{{ref}}/files", tags=["models"])
    def model_files(ref: Annotated[str, Path(max_length=200)], user: Who) -> dict[str, Any]:
        """What the version `ref` names now is made of (its run, model file and class, its
        model's and code's trees), for `mllib deploy` to fetch what it lacks of them."""
        from mllib.server.model_files import describe

        with ctx.registry() as reg:
            return describe(reg, ref)

    @app.get(f"{prefix}/models/{{name}}/versions/{{number}}/blobs/{{sha256}}", tags=["models"])
    def model_blob(
        name: Annotated[str, Path(max_length=200)],
        number: Annotated[int, Path(ge=1, le=2**62)],
        sha256: Annotated[str, Path(pattern="^[0-9a-f]{64}$")],
        user: Who,
    ) -> Any:
        """One blob of a version's trees (a manifest or a file), by its hash; no other."""
        from fastapi.responses import FileResponse

        from mllib.server.model_files import blob

        with ctx.registry() as reg:
            path = blob(reg, ctx.store, name, number, sha256)
        return FileResponse(path, media_type="application/octet-stream")

    @app.post(f"{prefix}/deployments", tags=["models"])
    def record_deployment(body: DeploymentBody, user: Who) -> dict[str, Any]:
        """Record that a version went live on a client's staging or prod, so `NAME@ENV` names it
        here (unless an alias of that name is set later): the record, `created` false when it
        was recorded already, `known` false when this server has no such version."""
        from mllib.server.deployments import record

        with ctx.registry() as reg:
            return record(reg, user, body.model_dump())

    @app.post(f"{prefix}/models/aliases", tags=["models"])
    def alias_model(body: AliasBody, user: Who) -> dict[str, Any]:
        """Point NAME@ALIAS at the version `ref` names, or remove it: what it named before
        (`before`) and after (`version`, null when removed)."""
        from dataclasses import asdict

        from mllib.errors import UsageError
        from mllib.models.aliases import remove_alias, set_alias

        with ctx.registry() as reg:
            ws = ctx.workspace(reg)
            if body.remove:
                return asdict(remove_alias(ws, body.ref, body.alias))
            if body.alias is None:
                raise UsageError("Which alias? Give `alias`")
            return asdict(set_alias(ws, body.ref, body.alias, user=user.name))

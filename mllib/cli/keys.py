"""`mllib keys create|list|revoke`: API keys for deployments (prod always needs one)."""

from __future__ import annotations

from typing import Annotated

import typer

from mllib.cli import output
from mllib.cli.deploy_args import EnvOpt, OnlyEnvOpt, deploy_context
from mllib.cli.numbers import number_option
from mllib.cli.output import styled
from mllib.ranges import BURST, RATE

app = typer.Typer(
    help="API keys for deployed models (sent as `Authorization: Bearer KEY`).", no_args_is_help=True
)


@app.command()
def create(
    env: EnvOpt,
    rps: Annotated[
        float | None,
        number_option(
            "--rps",
            RATE,
            help="This key's rate limit in requests/s (default: [keys] default_rps).",
            show_default=False,
        ),
    ] = None,
    burst: Annotated[
        float | None,
        number_option(
            "--burst",
            BURST,
            help="Requests it may send at once (default: rps × [keys] burst_s).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="What the key is for.", show_default=False)
    ] = None,
    admin: Annotated[
        bool,
        typer.Option(
            "--admin",
            help="It may choose a rollout's variant with the X-Mllib-Variant header (debugging).",
        ),
    ] = False,
    json_: Annotated[
        bool,
        typer.Option("--json", help="Print the key as JSON: id, env, token (once), rps, burst."),
    ] = False,
) -> None:
    """Create a key and print it once (only its hash is kept)."""
    from mllib.serving.control.keys import create_key

    ctx = deploy_context()
    key = create_key(
        ctx.ws.registry,
        ctx.clock,
        ctx.settings.keys,
        env=env,
        user=ctx.user,
        rps=rps,
        burst=burst,
        name=name,
        admin=admin,
        admins=ctx.settings.deploy.admins,
    )
    kind = "admin key" if admin else "key"
    output.err().print(
        styled(
            "Created {} [bold]{}[/] for {}: {} requests/s, bursts of {}.",
            kind,
            key.id,
            env,
            f"{key.rps:g}",
            f"{key.burst:g}",
        )
    )
    output.err().print(
        "This is the only time the key is shown; store it now (only its hash is kept)."
    )
    if json_:
        output.print_json({"id": key.id, "env": key.env, "token": key.token, "rps": key.rps,
                           "burst": key.burst, "name": name, "admin": admin})  # fmt: skip
        return
    print(key.token)


@app.command("list")
def list_(
    env: OnlyEnvOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List keys (ids, limits, state; never the keys themselves)."""

    from mllib.serving.control.keys import list_keys

    rows = list_keys(deploy_context(read_only=True).ws.registry, env)
    if json_:
        output.print_json(rows)
        return
    if not rows:
        output.err().print("No keys yet. Create one with `mllib keys create --env prod`.")
        return
    table = output.table(
        "ID", "ENV", "NAME", "RPS", "BURST", "STATE", "CREATED", "BY", "FLAGGED", whole=("ID",)
    )
    for r in rows:
        table.add_row(
            r["id"],
            r["env"],
            r["name"] or "",
            f"{r['rps']:g}",
            f"{r['burst']:g}",
            r["state"] + (" (admin)" if r["admin"] else ""),
            output.fmt_time(r["created_at"]),
            r["created_by"] or "",
            f"{r['flags']}× (last {output.fmt_time(r['flagged_at'])})" if r["flagged_at"] else "",
        )
    output.print_table(table)


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `mllib keys list`).")],
) -> None:
    """Revoke a key: servers refuse it within [keys] refresh_s (1 s by default)."""
    from mllib.serving.control.keys import revoke_key

    ctx = deploy_context()
    row = revoke_key(ctx.ws.registry, ctx.clock, key_id, user=ctx.user)
    output.err().print(f"Revoked key {row['id']} ({row['env']}).")

"""`mllib server ...`: set up and run a team server, and manage its users and agents (on the
server host, against its home: --dir, MLLIB_SERVER_HOME, or server/ in the user's data folder)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from mllib.cli import agents as agents_cli
from mllib.cli import output
from mllib.cli.numbers import number_option
from mllib.cli.output import styled
from mllib.ranges import COUNT, PORT, POSITIVE, Range

TOKEN_DAYS = Range(0, 36500, low_open=True)  # a login token's life: up to 100 years

app = typer.Typer(
    help="A team server: its database, users, agents; start it.", no_args_is_help=True
)
users_app = typer.Typer(help="People who may log in to the server.", no_args_is_help=True)
agents_app = typer.Typer(
    help="The server's agents (the hosts it runs runs on).", no_args_is_help=True
)
app.add_typer(users_app, name="users")
app.add_typer(agents_app, name="agents")

ExpiresOpt = Annotated[
    float | None,
    number_option(
        "--expires-days", TOKEN_DAYS, help="The token expires after this long.", show_default=False
    ),
]


def _seconds(days: float | None) -> float | None:
    """A token's life in seconds (None: it never expires)."""
    return None if days is None else days * 86400


DirOpt = Annotated[
    str | None,
    typer.Option(
        "--dir",
        help="The server's home (default: MLLIB_SERVER_HOME, else ~/.local/share/mllib/server).",
        show_default=False,
    ),
]  # fmt: skip
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.command()
def init(
    directory: DirOpt = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="postgresql://USER@HOST/DB for a team, or a SQLite file (default: registry.db "
            "in the home).",
            show_default=False,
        ),
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on.")] = None,
    port: Annotated[
        int | None, number_option("--port", PORT, help="Port (8750).", show_default=False)
    ] = None,
    max_running: Annotated[
        int | None,
        number_option(
            "--max-running", COUNT, help="A user's runs at once (8).", show_default=False
        ),
    ] = None,
    max_queued: Annotated[
        int | None,
        number_option(
            "--max-queued", COUNT, help="A user's runs waiting (10,000).", show_default=False
        ),
    ] = None,
    max_dataset_gb: Annotated[
        float | None,
        number_option(
            "--max-dataset-gb",
            POSITIVE,
            help="The largest dataset version users may upload, in GB (100).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Set up a server's home and database (run again to change a setting)."""
    from mllib.registry.dialect import redact_url
    from mllib.server.main import init as init_server

    home = init_server(
        directory,
        database=database,
        host=host,
        port=port,
        max_running=max_running,
        max_queued=max_queued,
        max_dataset_gb=max_dataset_gb,
    )
    settings = home.read()
    output.err().print(styled("[green]✔[/] Team server set up in {}", home.root), highlight=False)
    output.err().print(f"  database: {redact_url(home.database_url(settings))}", markup=False)
    output.err().print("  next: mllib server users add NAME --admin; mllib server start")


@app.command()
def start(
    directory: DirOpt = None,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on.")] = None,
    port: Annotated[
        int | None, number_option("--port", PORT, help="Port.", show_default=False)
    ] = None,
) -> None:
    """Run the server (the API and the dispatcher) in the foreground; Ctrl-C stops it."""
    from mllib.server.main import home_at
    from mllib.server.main import start as start_server

    home = home_at(directory)
    settings = home.read()
    output.err().print(
        f"mllib server on http://{host or settings.host}:{port or settings.port} ({home.root})",
        highlight=False,
    )
    start_server(home, host=host, port=port)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="The user's name (lower case).")],
    admin: Annotated[
        bool, typer.Option("--admin", help="May see and cancel everyone's runs.")
    ] = False,
    max_running: Annotated[
        int | None,
        number_option("--max-running", COUNT, help="Their own quota.", show_default=False),
    ] = None,
    max_queued: Annotated[
        int | None,
        number_option("--max-queued", COUNT, help="Their own quota.", show_default=False),
    ] = None,
    expires_days: ExpiresOpt = None,
    directory: DirOpt = None,
) -> None:
    """Add a user and print their login token (once: only its hash is kept)."""
    from mllib.server.accounts import add_user
    from mllib.server.main import database, home_at

    reg = database(home_at(directory))
    try:
        token = add_user(
            reg,
            name,
            admin=admin,
            max_running=max_running,
            max_queued=max_queued,
            expires_in_s=_seconds(expires_days),
        )
    finally:
        reg.close()
    output.err().print(f"User {name} added. Their login token (shown once):", highlight=False)
    print(token)


@users_app.command("token")
def users_token(
    name: Annotated[str, typer.Argument(help="The user.")],
    expires_days: ExpiresOpt = None,
    directory: DirOpt = None,
) -> None:
    """Print a new login token for a user (their others stay valid)."""
    from mllib.server.accounts import issue_token
    from mllib.server.main import database, home_at

    reg = database(home_at(directory))
    try:
        token = issue_token(reg, name, expires_in_s=_seconds(expires_days))
    finally:
        reg.close()
    print(token)


@users_app.command("list")
def users_list(directory: DirOpt = None, json_: JsonOpt = False) -> None:
    """Users, whether admin or disabled, their quotas and live tokens."""
    from mllib.server.accounts import list_users
    from mllib.server.main import database, home_at

    reg = database(home_at(directory))
    try:
        users = list_users(reg)
    finally:
        reg.close()
    if json_:
        output.print_json(users)
        return
    grid = output.table("NAME", "ADMIN", "DISABLED", "MAX RUNNING", "MAX QUEUED", "TOKENS")
    for u in users:
        grid.add_row(
            u["name"], "yes" if u["admin"] else "", "yes" if u["disabled"] else "",
            str(u["max_running"] or "default"), str(u["max_queued"] or "default"), str(u["tokens"]),
        )  # fmt: skip
    output.print_table(grid)


@users_app.command("disable")
def users_disable(
    name: Annotated[str, typer.Argument(help="The user.")],
    enable: Annotated[bool, typer.Option("--enable", help="Enable them again instead.")] = False,
    directory: DirOpt = None,
) -> None:
    """Disable a user: every token of theirs is refused at once."""
    from mllib.server.accounts import set_disabled
    from mllib.server.main import database, home_at

    reg = database(home_at(directory))
    try:
        set_disabled(reg, name, not enable)
    finally:
        reg.close()
    output.err().print(f"User {name} {'enabled' if enable else 'disabled'}.", highlight=False)


@agents_app.callback()
def _server_agents(directory: DirOpt = None) -> None:
    """The same commands as `mllib agents`, on the server's own list of agents."""
    from mllib.server.main import home_at

    os.environ["MLLIB_HOME"] = str(home_at(directory).root)


agents_app.command("add")(agents_cli.add)
agents_app.command("list")(agents_cli.list_local)
agents_app.command("check")(agents_cli.check)
agents_app.command("rm")(agents_cli.remove)
agents_app.command("remove", hidden=True)(agents_cli.remove)

"""`mllib login URL`, `mllib whoami`, `mllib logout`: this user's login to a team server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from mllib.cli import output

if TYPE_CHECKING:
    from mllib.client.http import Server


def login(
    url: Annotated[str, typer.Argument(help="The server, e.g. http://server:8750.")],
) -> None:
    """Log in to a team server: asks for your token and stores it (0600) in ~/.config/mllib
    (MLLIB_HOME/config when MLLIB_HOME is set)."""
    import getpass
    import sys

    from mllib.client.http import Server
    from mllib.credentials import normalize, save_login
    from mllib.errors import UsageError

    url = normalize(url)
    token = (getpass.getpass("Token: ") if sys.stdin.isatty() else sys.stdin.readline()).strip()
    if not token:
        raise UsageError("No token given", hint="Ask the server's admin for one.")
    server = Server(url, token)
    try:
        me = server.get("/api/v1/whoami", retry=False)
    finally:
        server.close()
    save_login(url, token)
    output.err().print(f"Logged in to {url} as {me['name']}.", highlight=False, markup=False)


def whoami() -> None:
    """Which server and user your commands use."""
    from mllib.client.http import Server
    from mllib.project import Project

    server = Server.connect(Project.find().config)
    try:
        me = server.get("/api/v1/whoami")
    finally:
        server.close()
    print(f"{me['name']} on {server.url}" + (" (admin)" if me["admin"] else ""))


def logout() -> None:
    """Revoke your token on the server and forget it here."""
    from mllib.client.http import Server
    from mllib.credentials import forget_login
    from mllib.errors import MllibError
    from mllib.project import Project

    server = Server.connect(Project.find().config)
    try:
        server.request("POST", "/api/v1/logout", retry=False)
    except MllibError as exc:  # revoked or unreachable: forget it here all the same
        output.err().print(f"(the server said: {exc.message})", markup=False)
    finally:
        server.close()
    forget_login(server.url)
    output.err().print(f"Logged out of {server.url}.", highlight=False, markup=False)


def server_url(local: bool = False) -> str | None:
    """The team server commands talk to (None: none is configured, or `--local`)."""
    if local:
        return None
    from mllib.credentials import configured_server
    from mllib.project import Project

    return configured_server(Project.find().config)


def team_server(local: bool = False) -> Server | None:
    """The team server these commands read from (when one is configured), else None."""
    if server_url(local) is None:
        return None
    from mllib.client.http import Server
    from mllib.project import Project

    return Server.connect(Project.find().config)


def ask_team_server(local: bool, request: Any, *args: Any) -> Any:
    """`request(server, *args)` against the team server, or None when there is none (or
    `local`)."""
    server = team_server(local)
    if server is None:
        return None
    try:
        return request(server, *args)
    finally:
        server.close()

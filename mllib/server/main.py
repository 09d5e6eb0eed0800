"""`mllib server init|start` and the admin's commands on the server host, as library functions.

`start` runs the HTTP API (uvicorn, one process: SQLite's one writer), the dispatcher, the
schedules' ticker and the housekeeping (mllib.server.housekeeping) in the foreground until
SIGTERM or Ctrl-C. The server's home is its MLLIB_HOME, so its agents (added with `mllib server
agents add`) and their host keys live there (config/), apart from any person's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mllib.errors import UsageError
from mllib.registry import Registry
from mllib.server.settings import ServerHome, ServerSettings, default_home


def home_at(directory: str | Path | None) -> ServerHome:
    return ServerHome(Path(directory).expanduser().resolve() if directory else default_home())


def init(
    directory: str | Path | None = None, *, database: str | None = None, **settings: Any
) -> ServerHome:
    """Set up a server's home: settings, and its database created and migrated."""
    from mllib.filemodes import private_dir
    from mllib.server.context import open_database

    home = home_at(directory)
    if home.settings_file.exists():
        current = home.read()
        changes = {k: v for k, v in settings.items() if v is not None}
        if database is not None:
            changes["database"] = database
        chosen = ServerSettings(**{**current.__dict__, **changes})
    else:
        given = {k: v for k, v in settings.items() if v is not None}
        if database:
            given["database"] = database
        chosen = ServerSettings(**given)
    if not 1 <= chosen.port <= 65535:
        raise UsageError(f"--port must be between 1 and 65535, got {chosen.port}")
    private_dir(home.root)
    open_database(home, chosen).close()  # fails here, before anything is written, if unreachable
    home.write(chosen)
    return home


def database(home: ServerHome) -> Registry:
    """The server's database, for the admin's commands (users, tokens)."""
    from mllib.server.context import open_database

    return open_database(home, home.read())


def start(home: ServerHome, *, host: str | None = None, port: int | None = None) -> None:
    """Serve the API and dispatch runs until stopped (SIGTERM, SIGINT)."""
    import uvicorn

    from mllib.server.app import create_app
    from mllib.server.context import ServerContext
    from mllib.server.dispatch import Dispatcher
    from mllib.server.housekeeping import Housekeeping
    from mllib.server.schedules import Ticker
    from mllib.server.submit_route import SubmitRoute

    os.environ["MLLIB_HOME"] = str(home.root)  # the server's agents.json and known_hosts
    ctx = ServerContext.open(home)
    host, port = host or ctx.settings.host, port or ctx.settings.port
    try:
        _check_address(host, port)
    except BaseException:
        ctx.close()
        raise
    dispatcher = Dispatcher(ctx)
    app = create_app(ctx, dispatcher)
    ticker = Ticker(ctx, app.state.commits)  # queues due scheduled evaluations
    housekeeping = Housekeeping(ctx)  # frees what abandoned uploads kept
    dispatcher.start()
    ticker.start()
    housekeeping.start()
    config = uvicorn.Config(
        SubmitRoute(app, app.state.commits, app.state.tokens, ctx.settings.max_queued),
        host=host,
        port=port,
        http=_one_write_protocol(),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        housekeeping.stop()
        ticker.stop()
        app.state.commits.stop()
        dispatcher.stop()
        ctx.close()


def _one_write_protocol() -> type:
    """uvicorn's httptools protocol sending each answer's head and body in one write, not two
    (mllib.serving.server.wire says why): a submission's answer is one small JSON body."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from mllib.serving.server.wire import HeldHeadTransport

    class OneWrite(HttpToolsProtocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(HeldHeadTransport(transport, self.loop))  # type: ignore[arg-type]

    return OneWrite


def _check_address(host: str, port: int) -> None:
    """A usage error, before anything starts, for a host this machine cannot listen on (uvicorn
    would print a traceback: an unknown name, or one that is not a valid host name at all)."""
    import socket

    from mllib.errors import UsageError

    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UsageError(
            f"The server cannot listen on host {host!r}: {exc}",
            hint="Give an address of this machine: --host 0.0.0.0 (every one) or 127.0.0.1.",
        ) from None

"""A team server's home: its settings (server.json, 0600: a database URL may hold a password),
its store of code and dataset blobs, its run folders, and its agents (the home is the server
process's MLLIB_HOME, so `mllib server agents add` and the dispatcher share agents.json and
known_hosts there).

`mllib server init [--dir DIR] [--database URL]` writes it; every other `mllib server ...` command
reads it from `--dir`, else `MLLIB_SERVER_HOME`, else the user's data folder's server/
(mllib.userdirs: ~/.local/share/mllib/server, or $MLLIB_HOME/data/server; an old ~/.mllib/server
stays in use).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from mllib.errors import ConfigError, UsageError

SETTINGS_FILE = "server.json"
DEFAULT_PORT = 8750


@dataclass(frozen=True)
class ServerSettings:
    """What `mllib server init` records; quotas apply to users without their own."""

    database: str = "registry.db"  # a SQLite file (relative to the home) or a PostgreSQL URL
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_running: int = 8  # a user's runs running at once
    max_queued: int = 10_000  # a user's runs waiting at once
    lease_s: float = 30.0  # a running job's lease; agents' answers renew it
    heartbeat_s: float = 1.0  # how often running jobs' agents are asked
    max_upload_mb: float = 512.0  # one blob (a code file, a dataset chunk)
    max_dataset_gb: float = 100.0  # one dataset version (its files together)
    upload_expiry_h: float = 24.0  # an upload's lease on its chunks, past its last request
    max_body_kb: float = 1024.0  # a submission's JSON


def default_home() -> Path:
    """`MLLIB_SERVER_HOME`, else server/ in the user's data folder (mllib.userdirs)."""
    from mllib.userdirs import server_home

    configured = os.environ.get("MLLIB_SERVER_HOME")
    return Path(configured).expanduser() if configured else server_home()


@dataclass(frozen=True)
class ServerHome:
    """The folder of one server."""

    root: Path

    @property
    def settings_file(self) -> Path:
        return self.root / SETTINGS_FILE

    @property
    def store_path(self) -> Path:
        return self.root / "store"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def database_url(self, settings: ServerSettings) -> str:
        from mllib.registry.dialect import is_postgres_url

        if is_postgres_url(settings.database):
            return settings.database
        path = Path(settings.database).expanduser()
        return str(path if path.is_absolute() else self.root / path)

    def read(self) -> ServerSettings:
        if not self.settings_file.is_file():
            raise UsageError(
                f"No team server is set up in {self.root}",
                hint="Set one up with `mllib server init` (or give --dir).",
            )
        try:
            data = json.loads(self.settings_file.read_text())
            known = {f.name for f in fields(ServerSettings)}
            unknown = sorted(set(data) - known)
            if unknown:
                raise ConfigError(f"{self.settings_file}: unknown key(s) {', '.join(unknown)}")
            return ServerSettings(**data)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{self.settings_file} is not valid: {exc}") from None

    def write(self, settings: ServerSettings) -> None:
        from mllib.filemodes import private_dir, write_private

        private_dir(self.root)
        write_private(self.settings_file, json.dumps(asdict(settings), indent=2) + "\n")

    def update(self, **changes: Any) -> ServerSettings:
        settings = ServerSettings(**{**asdict(self.read()), **changes})
        self.write(settings)
        return settings

"""What every part of a running server shares: its home and settings, its store, its database
connections, and the event that wakes the dispatcher.

SQLite has one writer, the server process, through one connection (synchronous=FULL: a
submission is acknowledged only once it is on disk). PostgreSQL gets a small pool, so requests
commit side by side and PostgreSQL groups their WAL flushes.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from mllib.config import CONFIG_FILE, Config, load_config
from mllib.datasets.chunkstore import LocalChunkStore, dataset_store
from mllib.plugins import SERVER_MIGRATIONS
from mllib.project import Project
from mllib.registry import Registry
from mllib.server.settings import ServerHome, ServerSettings
from mllib.store import LocalBlobStore
from mllib.workspace import Workspace

PG_POOL = 8


def _broken(reg: Registry | None) -> bool:
    return reg is not None and bool(getattr(reg.conn, "broken", False))


def open_database(home: ServerHome, settings: ServerSettings) -> Registry:
    """One connection to the server's database, migrated (registry, queue, accounts)."""
    reg = Registry.connect(home.database_url(settings), SERVER_MIGRATIONS)
    if not reg.is_postgres:
        reg.conn.execute("PRAGMA synchronous = FULL")
    return reg


@dataclass
class ServerContext:
    home: ServerHome
    settings: ServerSettings
    wake: threading.Event = field(default_factory=threading.Event)
    _pool: queue.LifoQueue[Registry] = field(default_factory=queue.LifoQueue)
    _opened: list[Registry] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, home: ServerHome) -> ServerContext:
        ctx = cls(home, home.read())
        ctx._release(ctx._new())  # the schema is migrated before the first request
        return ctx

    @property
    def pool_size(self) -> int:
        return PG_POOL if self.database.startswith(("postgresql", "postgres")) else 1

    @property
    def database(self) -> str:
        return self.home.database_url(self.settings)

    def _new(self) -> Registry:
        reg = open_database(self.home, self.settings)
        self._opened.append(reg)
        return reg

    def _release(self, reg: Registry) -> None:
        self._pool.put(reg)

    @contextlib.contextmanager
    def registry(self) -> Iterator[Registry]:
        """A connection for one request (waiting for one when all are in use). A connection a
        database restart broke is dropped, and a new one opened in its place when needed."""
        with self._lock:
            if self._pool.empty() and len(self._opened) < self.pool_size:
                self._release(self._new())  # may raise DatabaseUnavailable: nothing held
        reg: Registry | None = self._pool.get()
        try:
            if _broken(reg):
                self._drop(reg)
                reg = None
                with self._lock:
                    reg = self._new()
            assert reg is not None
            yield reg
        except Exception:
            if reg is not None and _broken(reg):
                self._drop(reg)
                reg = None
            raise
        finally:
            if reg is not None:
                self._release(reg)

    def _drop(self, reg: Registry | None) -> None:
        if reg is None:
            return
        with self._lock:
            if reg in self._opened:
                self._opened.remove(reg)
        with contextlib.suppress(Exception):
            reg.close()

    @cached_property
    def store(self) -> LocalBlobStore:
        return LocalBlobStore(self.home.store_path)

    @cached_property
    def datasets(self) -> LocalChunkStore:
        """The datasets' chunks and manifests (where the dispatcher's agents get theirs)."""
        return dataset_store(self.home.store_path)

    def workspace(self, reg: Registry) -> Workspace:
        """The server's workspace (its store, run folders and agents) over connection `reg`."""
        return Workspace.using(self.project, reg)

    @cached_property
    def project(self) -> Project:
        """The server's home as a project: its store and run folders live there."""
        self.home.runs_dir.mkdir(parents=True, exist_ok=True)
        toml = self.home.root / CONFIG_FILE  # [[agents]], [retry], [runtime] of the server
        data = dict(load_config(toml).data) if toml.is_file() else {}
        data["registry"] = {"path": str(self.home.root / "registry.db")}  # runs/ beside it
        data["store"] = {"path": str(self.home.store_path)}
        return Project(self.home.root, Config(toml if toml.is_file() else None, data))

    def close(self) -> None:
        for reg in self._opened:
            reg.close()
        self._opened.clear()

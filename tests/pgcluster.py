"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb + pg_ctl under a temp folder,
reached on a unix socket only (no TCP port), removed at the end.

PostgreSQL refuses to run as root, so when this process is root the cluster runs as the
`postgres` OS user Debian's package creates. `crash()` stops it as a power cut would
(`pg_ctl stop -m immediate`: no checkpoint); `start()` then recovers from the WAL.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

SEARCH = ("/usr/lib/postgresql/*/bin",)


def find_bin(name: str) -> str | None:
    """The path of a PostgreSQL server program (Debian keeps them off PATH), newest first."""
    for pattern in SEARCH:
        for folder in sorted(glob.glob(pattern), reverse=True):
            if os.access(os.path.join(folder, name), os.X_OK):
                return os.path.join(folder, name)
    return shutil.which(name)


class Cluster:
    """One cluster; `url(db)` is a libpq URL on its socket."""

    def __init__(self, root: Path | None = None) -> None:
        initdb, self.pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        if not initdb or not self.pg_ctl:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.root = root or Path(tempfile.mkdtemp(prefix="mllib-pg-"))
        self.data = self.root / "data"
        self.socket = self.root / "socket"
        self.socket.mkdir(parents=True, exist_ok=True)
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        if os.geteuid() == 0:
            pw = pwd.getpwnam(self.user)
            for path in (self.root, self.socket):
                os.chown(path, pw.pw_uid, pw.pw_gid)
            self.root.chmod(0o755)
        self.socket.chmod(0o755)
        self._run(
            [
                initdb,
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                self.user,
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"unix_socket_directories = '{self.socket}'\nlisten_addresses = ''\n"
                "max_connections = 200\nshared_buffers = 64MB\n"
            )
        self.start()

    def _run(self, argv: list[str]) -> None:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", self.user, "--", *argv]
        # The cluster outlives the tests that start or restart it (a session's, or a benchmark's):
        # it must not carry the serving tests' marker, whose check finds servers left running.
        env = {k: v for k, v in os.environ.items() if k != "MLLIB_TEST_SERVING"}
        subprocess.run(argv, check=True, capture_output=True, timeout=120, cwd="/", env=env)

    def start(self) -> None:
        assert self.pg_ctl
        self._run([self.pg_ctl, "-D", str(self.data), "-l", str(self.root / "log"), "-w", "start"])

    def crash(self) -> None:
        """Stop it at once, as kill -9 of the postmaster would leave it (recovery on start)."""
        assert self.pg_ctl
        self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"])

    def stop(self) -> None:
        assert self.pg_ctl
        self._run([self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"])

    @classmethod
    def attach(cls, url: str) -> Cluster:
        """A cluster already running (its `url()`), to make databases in; not stopped here."""
        from urllib.parse import parse_qs, urlparse

        parts = urlparse(url)
        cluster = cls.__new__(cls)
        cluster.user = parts.username or "postgres"
        cluster.socket = Path(parse_qs(parts.query)["host"][0])
        cluster.root = cluster.socket.parent
        cluster.data = cluster.root / "data"
        cluster.pg_ctl = find_bin("pg_ctl")
        return cluster

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{db}?host={self.socket}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        try:
            self.stop()
        except (subprocess.SubprocessError, OSError):
            pass
        shutil.rmtree(self.root, ignore_errors=True)

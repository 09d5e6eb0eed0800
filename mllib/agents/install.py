"""Installing and updating the agent program on a host, idempotently, over SFTP.

The payload is a deterministic tar of mllib's sources and agents/mllib_agent; its sha256 plus the
pinned dependency list make the agent's version. Each connection compares it with the host's
`installed` file and reinstalls on a mismatch. The host's own python3 (absolute path) builds a
venv; the dependencies are pinned to this machine's versions, so both sides pickle alike.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import secrets
import tarfile
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

from mllib.agents.connection import Connection
from mllib.errors import MllibError, RuntimeUnavailableError

AGENT_DIR = ".mllib-agent"
# What the agent imports: the registry, store, supervisor, worker and their libraries.
AGENT_REQUIREMENTS = [
    "sqlite-utils",
    "orjson",
    "psutil",
    "cloudpickle",
    "python-dotenv",
    "pathspec",
    "sentry-sdk",  # for models that call mllib.sentry_plugin.enable()
    # Project venvs (the venv runtime): uv builds them, requirements read as pip reads them.
    "uv",
    "pip-requirements-parser",
    "packaging",
    "platformdirs",  # mllib.userdirs: the cache of what requirements files resolve to
]
# The Docker runtime: the engine's SDK.
DOCKER_REQUIREMENTS = ["docker"]
MIN_PYTHON = (3, 11)


class AgentInstallError(RuntimeUnavailableError):
    """The agent could not be installed or updated on its host."""


@dataclass(frozen=True)
class Payload:
    data: bytes  # tar.gz
    sha256: str
    deps: list[str]

    @property
    def deps_stamp(self) -> str:
        return hashlib.sha256("\n".join(self.deps).encode()).hexdigest()[:16]

    @property
    def version(self) -> str:
        """What the host's `installed` file must say for this payload and these dependencies."""
        from mllib._version import __version__

        return f"{__version__} {self.sha256[:16]} {self.deps_stamp}"


def agent_program_dir() -> Path:
    """agents/mllib_agent in a source checkout; mllib/_agent/mllib_agent inside a wheel."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (
        package / "_agent" / "mllib_agent",
        package.parent / "agents" / "mllib_agent",
    ):
        if (candidate / "server.py").is_file():
            return candidate
    raise MllibError(
        "mllib's agent program is missing from this installation", hint="Reinstall mllib."
    )


def requirements() -> list[str]:
    """The agent's dependencies, pinned to the versions installed here (plus what the Docker
    runtime needs when it is registered, so an agent with an engine can use it)."""
    from mllib.runtime import RUNTIMES

    names = list(AGENT_REQUIREMENTS) + (DOCKER_REQUIREMENTS if "docker" in RUNTIMES else [])
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def _add_tree(tar: tarfile.TarFile, folder: Path, arcname: str) -> None:
    for path in sorted(folder.rglob("*.py")):
        if "__pycache__" in path.parts or "_templates" in path.parts or "_agent" in path.parts:
            continue
        data = path.read_bytes()
        info = tarfile.TarInfo(f"{arcname}/{path.relative_to(folder).as_posix()}")
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tar.addfile(info, io.BytesIO(data))


@cache
def payload() -> Payload:
    """mllib's sources and the agent program as one deterministic tar.gz (same bytes, same hash)."""
    import gzip

    mllib_dir = Path(__file__).resolve().parents[1]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_tree(tar, mllib_dir, "mllib")
        _add_tree(tar, agent_program_dir(), "mllib_agent")
    data = gzip.compress(raw.getvalue(), mtime=0)
    return Payload(data, hashlib.sha256(data).hexdigest(), requirements())


def agent_root(conn: Connection) -> str:
    return conn.spec.root or posixpath.join(conn.home, AGENT_DIR)


def venv_python(conn: Connection) -> str:
    return posixpath.join(agent_root(conn), "venv", "bin", "python")


def installed_version(conn: Connection) -> str | None:
    try:
        with conn.sftp.open(posixpath.join(agent_root(conn), "installed")) as handle:
            return handle.read().decode().strip()
    except OSError:
        return None


def host_python(conn: Connection) -> str:
    """The absolute path of the host's python3 (or the agent's configured `python`), checked >= 3.11."""
    name = conn.spec.python
    if not name.startswith("/"):
        # The name is an argument of the remote shell, never part of its script.
        found = conn.run(["sh", "-c", 'command -v -- "$1"', "sh", name], timeout=30)
        if found.code != 0 or not found.stdout.strip().startswith("/"):
            raise AgentInstallError(
                f"Agent {conn.spec.name}: no {name} on the host's PATH",
                hint="Install Python 3.11+ there (Debian: apt-get install python3 python3-venv), "
                "or set the agent's `python` to its absolute path.",
            )
        name = found.stdout.strip().splitlines()[0]
    probe = conn.run([name, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"])
    try:
        version = tuple(int(x) for x in probe.stdout.split())
    except ValueError:
        version = ()
    if probe.code != 0 or version < MIN_PYTHON:
        raise AgentInstallError(
            f"Agent {conn.spec.name}: {name} is Python {'.'.join(map(str, version)) or '?'}; "
            f"the agent needs {'.'.join(map(str, MIN_PYTHON))} or newer",
            hint="Install a newer python3 on the host, or point the agent's `python` at one.",
        )
    return name


def ensure_installed(conn: Connection, *, force: bool = False) -> dict | None:
    """Install or update the agent when the host's version differs (or `force`); None if current."""
    pay = payload()
    if not force and installed_version(conn) == pay.version:
        return None
    root = agent_root(conn)
    python = host_python(conn)
    for sub in ("", "incoming"):
        _mkdir(conn, posixpath.join(root, sub) if sub else root)
    # A unique name: two clients updating the same host at once must not write one file.
    remote_payload = posixpath.join(
        root, "incoming", f"payload-{pay.sha256[:16]}-{secrets.token_hex(4)}.tar.gz"
    )
    with conn.sftp.open(remote_payload, "wb") as handle:
        handle.set_pipelined(True)
        handle.write(pay.data)
    source = (agent_program_dir() / "bootstrap.py").read_text()
    args = {
        "root": root,
        "payload": remote_payload,
        "payload_sha": pay.sha256,
        "deps": pay.deps,
        "deps_stamp": pay.deps_stamp,
        "version": pay.version,
    }
    result = conn.run([python, "-c", source, json.dumps(args)], timeout=1800)
    try:
        report = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        report = {
            "ok": False,
            "message": "the installer printed no report",
            "detail": result.stderr,
        }
    if result.code != 0 or not report.get("ok"):
        raise AgentInstallError(
            f"Installing the agent on {conn.spec.name} failed: {report.get('message')}",
            hint=(report.get("detail") or result.stderr or "").strip()[-1500:] or None,
        )
    return report


def _mkdir(conn: Connection, path: str) -> None:
    try:
        conn.sftp.stat(path)
    except OSError:
        conn.sftp.mkdir(path, mode=0o700)

"""The local Docker engine: a cheap reachability probe, the SDK client, and the errors it raises.

``engine_problem()`` only opens a socket, so `mllib` can decide between the docker and process
runtimes without importing the docker SDK; ``docker_client()`` imports it when a runtime needs it::

    if engine_problem() is None:
        client = docker_client()
"""

from __future__ import annotations

import os
import socket
import sys
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from mllib.errors import EXIT_FAILED, EXIT_SYSTEM, MllibError
from mllib.protocol.failure import SYSTEM_ERROR, USER_ERROR

if TYPE_CHECKING:
    from docker import DockerClient

DEFAULT_HOST = "unix:///var/run/docker.sock"
ENGINE_SCRIPT = "scripts/lib/docker-engine.sh"


class DockerRuntimeError(MllibError):
    """Something the Docker runtime needed failed; `failure_class` says whose fault it was."""

    exit_code = EXIT_SYSTEM

    def __init__(
        self, message: str, *, hint: str | None = None, failure_class: str = SYSTEM_ERROR
    ) -> None:
        super().__init__(message, hint=hint)
        self.failure_class = failure_class
        if failure_class == USER_ERROR:
            self.exit_code = EXIT_FAILED


class EngineUnavailableError(DockerRuntimeError):
    """No Docker engine answers, or this user may not use it."""


class ImageBuildError(DockerRuntimeError):
    """An image could not be built: a bad requirement (user_error) or an engine failure (system_error)."""


# The name mllib.runtime.base_image used before the Docker runtime existed.
BaseImageError = DockerRuntimeError


def engine_host() -> str:
    """The engine mllib talks to: DOCKER_HOST, else the local socket."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def engine_problem(timeout: float = 1.0) -> str | None:
    """None when a Docker engine accepts connections at `engine_host()`, else why not.

    Costs one connect (well under a millisecond locally) and never imports the docker SDK.
    """
    host = engine_host()
    parts = urlsplit(host)
    try:
        if parts.scheme == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(timeout)
                probe.connect(parts.path)
        elif parts.scheme in ("tcp", "http", "https"):
            port = parts.port or (2376 if os.environ.get("DOCKER_TLS_VERIFY") else 2375)
            socket.create_connection((parts.hostname or "localhost", port), timeout).close()
        else:
            return f"DOCKER_HOST={host} uses a scheme mllib cannot probe"
    except PermissionError:
        return f"this user may not use the Docker engine at {host} (join the docker group)"
    except OSError as exc:
        return f"no Docker engine answers at {host} ({exc.strerror or exc})"
    return None


def image_present(ref: str, timeout: float = 5.0) -> bool | None:
    """Whether the engine has image `ref` (one HTTP request on the engine's socket, without the
    docker SDK); None when the engine cannot be asked this way (TLS, ssh://, no answer)."""
    import http.client
    from urllib.parse import quote

    parts = urlsplit(engine_host())
    if parts.scheme == "unix":

        class UnixConnection(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(parts.path)

        conn: http.client.HTTPConnection = UnixConnection("localhost", timeout=timeout)
    elif parts.scheme in ("tcp", "http") and not os.environ.get("DOCKER_TLS_VERIFY"):
        conn = http.client.HTTPConnection(
            parts.hostname or "localhost", parts.port or 2375, timeout=timeout
        )
    else:
        return None
    try:
        conn.request("GET", f"/images/{quote(ref, safe='')}/json")
        status = conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()
    return {200: True, 404: False}.get(status)


def docker_client(timeout: int = 300) -> DockerClient:
    """A docker SDK client for `engine_host()`; raises EngineUnavailableError saying what to do.

    The socket is probed first: the SDK leaks its socket when the connection fails.
    """
    problem = engine_problem(timeout=10)
    if problem is not None:
        raise EngineUnavailableError(
            problem, hint=f"Start one as root with {ENGINE_SCRIPT}, or use --runtime process."
        )
    try:
        docker = import_docker()
    except ImportError as exc:
        raise EngineUnavailableError(
            "the docker Python package is missing", hint="pip install docker"
        ) from exc
    try:
        return docker.from_env(timeout=timeout)
    except docker.errors.DockerException as exc:
        raise EngineUnavailableError(
            f"the Docker engine at {engine_host()} does not answer: {exc}",
            hint=f"Start it as root with {ENGINE_SCRIPT}.",
        ) from exc


def import_docker() -> ModuleType:
    """The docker SDK, imported without paramiko unless the engine is reached over ssh://.

    docker imports paramiko only for ssh:// engines and does without it when it is missing;
    it is two thirds of the SDK's import time (0.2 s here), which every run would pay.
    """
    if "docker" in sys.modules or "paramiko" in sys.modules or engine_host().startswith("ssh:"):
        import docker

        return docker
    sys.modules["paramiko"] = None  # type: ignore[assignment]  # import paramiko -> ImportError
    try:
        import docker
    finally:
        if "paramiko" in sys.modules and sys.modules["paramiko"] is None:
            del sys.modules["paramiko"]
    return docker


def image_id(client: DockerClient, ref: str) -> str | None:
    """The id of image `ref` (a tag or id), or None when the engine does not have it."""
    import docker.errors

    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None

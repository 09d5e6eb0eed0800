"""Building images from a build context mllib writes itself (never a user's Dockerfile).

``build_image`` streams the engine's build output to ``progress`` and turns a failure into an
:class:`ImageBuildError` naming the failing step and the line that says why; it never leaves a
build container behind. ``ca_files`` and ``pip_dockerfile_lines`` are the pieces every
pip-installing image shares: the host's CA bundle trusted, the host's pip settings as build args.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllib.protocol.failure import SYSTEM_ERROR
from mllib.runtime.engine import ImageBuildError
from mllib.runtime.host_settings import HOST_CA_BUNDLE
from mllib.runtime.install_errors import network_trouble

if TYPE_CHECKING:
    from docker import DockerClient

Progress = Callable[[str], None]
VENV = "/opt/venv"
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STEP = re.compile(r"^Step \d+/\d+ : (?P<instruction>.*)$")
_STEP_RESULT = re.compile(r"^ ---> (?P<id>[0-9a-f]{12,64})$")


@dataclass(frozen=True)
class BuildFailure:
    """Where a build stopped: the Dockerfile step, the engine's message and the output before it."""

    tag: str
    step: str
    detail: str
    output: Sequence[str]

    @property
    def error_lines(self) -> list[str]:
        """The lines of the failing step's output that say what went wrong (pip's ERROR: lines)."""
        lines = [line.strip() for line in self.output if line.strip()]
        errors = [line for line in lines if line.startswith(("ERROR:", "error:", "E: "))]
        return errors or lines[-1:]

    @property
    def network_trouble(self) -> bool:
        return network_trouble(self.output)


# Turns a failure into (message, hint, failure class); the default blames the engine or index.
Explain = Callable[[BuildFailure], tuple[str, str, str]]


def explain_failure(failure: BuildFailure) -> tuple[str, str, str]:
    """The default explanation: every failure is a system error, with a hint for proxies."""
    where = f" at `{failure.step}`" if failure.step else ""
    why = failure.error_lines[0] if failure.error_lines else failure.detail
    message = f"building {failure.tag} failed{where}: {why}"
    if any("CERTIFICATE_VERIFY_FAILED" in line for line in failure.output):
        hint = (
            "The build does not trust the TLS proxy's certificate: give it the host's CA bundle "
            f"(pip's `cert` setting, REQUESTS_CA_BUNDLE, or {HOST_CA_BUNDLE})."
        )
    else:
        hint = "Check that the base image exists and the package index is reachable."
    return message, hint, SYSTEM_ERROR


def build_image(
    client: DockerClient,
    tag: str,
    files: Mapping[str, bytes],
    *,
    buildargs: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    network_mode: str | None = None,
    progress: Progress | None = None,
    explain: Explain = explain_failure,
    cancel: threading.Event | None = None,
) -> str:
    """Build `files` (a Dockerfile and what it copies) as `tag`; return the image id.

    Every output line goes to `progress`. A failure raises ImageBuildError with `explain`'s
    message, hint and failure class. Setting `cancel` cuts the build's connection at once,
    which makes the engine abandon the build; either way the layers it made are removed.
    """
    import docker.errors

    if labels:  # one LABEL step, where the API's `labels` would add one step per label
        pairs = " ".join(f"{key}={json.dumps(value)}" for key, value in sorted(labels.items()))
        files = {
            **files,
            "Dockerfile": files["Dockerfile"].rstrip(b"\n") + f"\nLABEL {pairs}\n".encode(),
        }
    state = _BuildState(progress or (lambda _line: None))
    responses: list[Any] = []
    hook = _keep_build_response(responses)
    client.api.hooks["response"].append(hook)
    try:
        stream = client.api.build(
            fileobj=tar_context(files),
            custom_context=True,
            tag=tag,
            buildargs=dict(buildargs or {}),
            rm=True,
            forcerm=True,  # the failing step's container goes too
            decode=True,
            network_mode=network_mode,
        )
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"building {tag} failed: {exc.explanation or exc}") from exc
    finally:
        client.api.hooks["response"].remove(hook)
    finished = threading.Event()
    if cancel is not None and responses:
        threading.Thread(
            target=_cut_when_cancelled, args=(cancel, finished, responses[0]), daemon=True
        ).start()
    try:
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                failure = BuildFailure(tag, state.step, _ANSI.sub("", detail).strip(), state.output)
                message, hint, failure_class = explain(failure)
                raise ImageBuildError(message, hint=hint, failure_class=failure_class)
            state.read(chunk)
        if cancel is not None and cancel.is_set():
            raise ImageBuildError(f"building {tag} was cancelled")
        return str(state.image or client.images.get(tag).id)
    except Exception as exc:
        _discard(client, state.last_layer)
        if isinstance(exc, ImageBuildError):
            raise
        if cancel is not None and cancel.is_set():
            raise ImageBuildError(f"building {tag} was cancelled") from exc
        if isinstance(exc, docker.errors.APIError):
            raise ImageBuildError(f"building {tag} failed: {exc.explanation or exc}") from exc
        raise
    finally:
        finished.set()


class _BuildState:
    """What the build stream has said so far: the current step, its output, the layers made."""

    def __init__(self, say: Progress) -> None:
        self.say = say
        self.step = ""
        self.output: list[str] = []
        self.last_layer: str | None = None
        self.image: str | None = None

    def read(self, chunk: Mapping[str, Any]) -> None:
        for line in _ANSI.sub("", chunk.get("stream", "")).splitlines():
            if match := _STEP.match(line.strip()):
                self.step, self.output = match["instruction"], []
            elif match := _STEP_RESULT.match(line.rstrip()):
                self.last_layer = match["id"]
            elif line.strip():
                self.output = [*self.output[-199:], line]
            if line.strip():
                self.say(line.rstrip())
        if aux := chunk.get("aux"):
            self.image = aux.get("ID", self.image)


def _keep_build_response(responses: list[Any]) -> Callable[..., Any]:
    """A requests response hook keeping the build's streaming response, so it can be cut."""

    def hook(response: Any, *args: Any, **kwargs: Any) -> Any:
        if response.request.path_url.split("?")[0].endswith("/build"):
            responses.append(response)
        return response

    return hook


def _cut_when_cancelled(cancel: threading.Event, finished: threading.Event, response: Any) -> None:
    """Shut the build's socket down when `cancel` is set: the engine then stops the build."""
    while not finished.is_set():
        if cancel.wait(0.1):
            sock = getattr(getattr(response.raw, "connection", None), "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            return


def _discard(client: DockerClient, layer: str | None, wait_s: float = 15.0) -> None:
    """Remove what a failed or cancelled build left: its last step's image and the untagged
    ones below it, once the engine has removed the step's container; a tagged image, or a
    cached layer other images build on, is left alone."""
    import docker.errors

    if layer is None:
        return
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if not client.images.get(layer).tags:
                client.images.remove(layer)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            # An abandoned step's container lingers a moment; child images mean: not ours.
            if "container" not in str(exc) or time.monotonic() > deadline:
                return
            time.sleep(0.2)


def ca_files(ca_bundle: str | None) -> dict[str, bytes]:
    """The host's CA bundle as single certificates for the image's trust store (context paths)."""
    certs = _split_pem(Path(ca_bundle).read_bytes()) if ca_bundle else []
    return {f"mllib-ca/host-{number:03d}.crt": cert for number, cert in enumerate(certs)}


def pip_dockerfile_lines(*, with_ca: bool) -> list[str]:
    """Dockerfile lines that trust the host's CAs and take the host's pip settings as build args."""
    ca_bundle = "/etc/ssl/certs/ca-certificates.crt"
    lines = []
    if with_ca:
        lines += [
            "COPY mllib-ca/ /usr/local/share/ca-certificates/mllib-host/",
            "RUN update-ca-certificates >/dev/null",
        ]
    return [
        *lines,
        f"ENV SSL_CERT_FILE={ca_bundle} REQUESTS_CA_BUNDLE={ca_bundle} PIP_CERT={ca_bundle}",
        "ARG PIP_INDEX_URL",
        "ARG PIP_EXTRA_INDEX_URL",
        "ARG PIP_FIND_LINKS",
        "ARG PIP_TRUSTED_HOST",
    ]


def venv_env_line(venv: str = VENV) -> str:
    return f"ENV VIRTUAL_ENV={venv} PATH={venv}/bin:{IMAGE_PATH}"


def tar_context(files: Mapping[str, bytes]) -> io.BytesIO:
    """An uncompressed tar of `files` (context path -> content) with fixed metadata."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def _split_pem(bundle: bytes) -> list[bytes]:
    """Split a PEM bundle into single certificates, as update-ca-certificates expects."""
    pattern = rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----"
    return [cert + b"\n" for cert in re.findall(pattern, bundle, re.S)]


BUILD_LOCK_TIMEOUT_S = 3600.0  # an image with large dependencies (torch) takes minutes to build


@contextlib.contextmanager
def host_lock(name: str) -> Iterator[None]:
    """Hold this user's lock named `name`, so concurrent runs build an image once, not twice."""
    from mllib.locks import file_lock, user_lock_dir

    path = user_lock_dir() / f"{name}.lock"
    with file_lock(path, timeout=BUILD_LOCK_TIMEOUT_S, what=f"the image build {name}"):
        yield

"""The Docker runtime: the same worker entrypoint, inside a container of the project's image.

A run becomes one container of the image mllib builds from the project's dependencies
(mllib.runtime.images), started as the invoking uid:gid so files written back belong to the user:

    /mllib/run      the run folder (spec, events, model, artifacts), read-write
    /mllib/code     the code the run executes (the project, or a rerun's recorded snapshot)
    /mllib/project  the project folder, read-write; it is also mounted at its host path, the
                    working directory, so relative and absolute paths into the project (and
                    os.getcwd()) mean what they mean on the host
    data paths      env values naming files or folders outside the project, read-only, at the
                    same path as on the host (under /mllib/data/VAR when that path is a system
                    folder of the image, and the variable is rewritten to match)
    /mllib/cache/packages  the user's record of what each environment has installed
                    (mllib.worker.package_cache), read-write: the runs of one image read their
                    packages' metadata once between them, not once per container

A host path is used as is unless it is, or is inside, a folder the image needs (/usr, /etc,
/opt/venv, /mllib...), or is a whole top-level folder such as /tmp or /home.

The container gets the run's environment (the env file's variables, those named by a param's
`env=`, the host's proxy settings), NVIDIA GPUs when nvidia-smi lists some (all of them, or
the run's own: Job.gpus), and the memory,
CPU and shared-memory limits of `[runtime]` in mllib.toml. The container is never auto-removed:
its logs are streamed, its exit waited for, its state read (to tell an out-of-memory kill), and
only then is it removed, on success, failure and cancel alike.

>>> handle = DockerRuntime().start(job)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from mllib.config import Config
from mllib.errors import ConfigError, UsageError
from mllib.identity import current_user
from mllib.project import Project
from mllib.protocol.argv import worker_argv
from mllib.protocol.failure import (
    EXIT_CANCELLED,
    EXIT_SYSTEM_ERROR,
    SYSTEM_ERROR,
    USER_ERROR,
    ExitStatus,
)
from mllib.protocol.folder import RunFolder
from mllib.runtime.base import Job
from mllib.runtime.engine import DockerRuntimeError, docker_client, engine_problem, import_docker
from mllib.runtime.env_plan import EnvPlan
from mllib.runtime.gpus import nvidia_gpus
from mllib.runtime.host_settings import host_proxies
from mllib.runtime.image_build import VENV
from mllib.runtime.install_errors import python_mismatch
from mllib.runtime.prepared import PreparedHandle

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

RUN_DIR = "/mllib/run"
CODE_DIR = "/mllib/code"
PROJECT_DIR = "/mllib/project"
DATA_DIR = "/mllib/data"
CACHE_DIR = "/mllib/cache"  # MLLIB_ENV_CACHE in the container; only its packages/ is mounted
RUN_LABEL = "org.mllib.run"
# Host paths that cannot appear at the same path in the container: the image's own folders
# (and anything inside them), and top-level folders a mount would hide whole.
IMAGE_FOLDERS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/mllib",
                 "/opt/venv", "/proc", "/run", "/sbin", "/sys", "/usr", "/var/lib")  # fmt: skip
TOP_FOLDERS = ("/home", "/media", "/mnt", "/opt", "/root", "/srv", "/tmp", "/var")
_SIZE = re.compile(r"^\d+(\.\d+)?[bkmg]?$", re.IGNORECASE)
API_TIMEOUT_S = 600  # for each engine call; waiting for the container and its logs has none
_DONE = object()


@dataclass(frozen=True)
class ContainerSettings:
    """`[runtime]` settings of mllib.toml that shape a run's container."""

    memory: str | None = None  # e.g. "8g"; none: no limit
    cpus: float | None = None  # e.g. 2.5; none: no limit
    shm_size: str = "1g"  # /dev/shm (PyTorch DataLoader workers share tensors through it)
    network: str = "host"  # host: what a child process sees (localhost services, proxies)
    gpus: str = "auto"  # auto: every GPU nvidia-smi lists; none: CPU only

    @classmethod
    def from_config(cls, config: Config) -> ContainerSettings:
        runtime = config.runtime
        settings = cls(
            memory=str(runtime.memory) if runtime.memory is not None else None,
            cpus=runtime.cpus,
            shm_size=str(runtime.shm_size),
            network=runtime.network,
            gpus=runtime.gpus,
        )
        settings.check(config.where)
        return settings

    def check(self, where: str) -> None:
        for key, value in (("memory", self.memory), ("shm_size", self.shm_size)):
            if value is not None and not _SIZE.match(value):
                raise ConfigError(
                    f"{where}: [runtime] {key} = {value!r} is not a size",
                    hint=f'Write a number of bytes with a unit, e.g. {key} = "4g" or "512m".',
                )
        if self.cpus is not None and self.cpus <= 0:
            raise ConfigError(f"{where}: [runtime] cpus must be more than 0, got {self.cpus}")
        if self.network not in ("host", "bridge", "none"):
            raise ConfigError(f"{where}: [runtime] network must be host, bridge or none")
        if self.gpus not in ("auto", "none"):
            raise ConfigError(f"{where}: [runtime] gpus must be auto or none")


class DockerRuntime:
    """Runs the worker in a container of the project's image on the local Docker engine."""

    name = "docker"

    def available(self) -> str | None:
        return engine_problem()

    def start(self, job: Job) -> DockerHandle:
        from mllib.runtime.images import image_settings

        config = Project.find(job.work_dir).config
        image_settings(config)  # bad settings fail the start, before anything runs
        handle = DockerHandle(job, config, ContainerSettings.from_config(config))
        handle.begin()
        return handle

    def reap(self, run_id: str, grace_s: float = 5.0) -> int:
        """Stop and remove whatever container of `run_id` still exists; returns how many."""
        if engine_problem() is not None:
            return 0
        client = docker_client(timeout=60 + math.ceil(grace_s))
        try:
            found = client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"})
            for container in found:
                _stop(container, grace_s)
                _remove(container)
            return len(found)
        finally:
            client.close()


def container_options(
    job: Job,
    settings: ContainerSettings,
    image: str,
    *,
    uid: int | None = None,
    gid: int | None = None,
) -> dict[str, Any]:
    """The keyword arguments of `client.containers.create` for `job` (no engine needed)."""
    from docker.types import Mount

    env = dict(job.env)
    mounts = {
        RUN_DIR: Mount(RUN_DIR, str(job.run_dir), type="bind"),
        CODE_DIR: Mount(CODE_DIR, str(job.code_dir), type="bind"),
        PROJECT_DIR: Mount(PROJECT_DIR, str(job.work_dir), type="bind"),
    }
    packages = _packages_cache()
    if packages is not None:
        target = f"{CACHE_DIR}/{packages.name}"
        mounts[target] = Mount(target, str(packages), type="bind")
        env["MLLIB_ENV_CACHE"] = CACHE_DIR
    project = PurePosixPath(job.work_dir)
    working_dir = str(project) if same_path_ok(project) else PROJECT_DIR
    mounts.setdefault(working_dir, Mount(working_dir, str(job.work_dir), type="bind"))
    for name, host_path in job.data_mounts.items():  # read-only, even inside the project
        target = data_target(name, Path(host_path))
        mounts.setdefault(target, Mount(target, str(host_path), type="bind", read_only=True))
        env[name] = target
    env.update(
        PYTHONUNBUFFERED="1",
        HOME="/tmp",  # the uid may have no home (or passwd entry) in the image
        USER=current_user(),
        LOGNAME=current_user(),
        MLLIB_HOST_CODE_DIR=str(job.code_dir),  # tracebacks show the host's paths
        **host_proxies(),
    )
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    options: dict[str, Any] = {
        "image": image,
        "command": worker_argv(f"{VENV}/bin/python", RUN_DIR, CODE_DIR),
        "name": f"mllib-{_safe(job.run_id)}-{secrets.token_hex(3)}",
        "labels": {RUN_LABEL: job.run_id, "org.mllib.project": str(job.work_dir)},
        "user": f"{uid}:{gid}",
        "working_dir": working_dir,
        "environment": env,
        "mounts": list(mounts.values()),
        "init": True,  # forwards signals and reaps the worker's children; PID 1 ignores SIGKILL
        "network_mode": settings.network,
        "shm_size": settings.shm_size,
    }
    if settings.memory:
        options["mem_limit"] = settings.memory
        options["memswap_limit"] = settings.memory  # no swap: over the limit is out of memory
    if settings.cpus:
        options["nano_cpus"] = int(settings.cpus * 1e9)
    if settings.gpus == "auto" and nvidia_gpus():
        options["device_requests"] = [_device_request(job.gpus)]
        if job.gpus is not None:  # the container sees only these, numbered from 0
            env["NVIDIA_VISIBLE_DEVICES"] = ",".join(job.gpus)
    return options


def _packages_cache() -> Path | None:
    """The user's folder of installed-package records (mllib.worker.package_cache), created if
    needed; None where it cannot be (a read-only home): the worker then reads the metadata."""
    from mllib.filemodes import private_dir
    from mllib.userdirs import packages_cache_dir

    try:
        return private_dir(packages_cache_dir())
    except OSError:
        return None


def _device_request(gpus: list[str] | None) -> Any:
    """All the host's GPUs, or only the run's own (by nvidia-smi index)."""
    from docker.types import DeviceRequest

    if gpus is None:
        return DeviceRequest(count=-1, capabilities=[["gpu"]])
    return DeviceRequest(device_ids=list(gpus), capabilities=[["gpu"]])


def same_path_ok(path: PurePosixPath) -> bool:
    """Whether a host path can be mounted at the same path in the container (see above)."""
    if path == path.parent or str(path) in TOP_FOLDERS:
        return False
    return not any(path.is_relative_to(folder) for folder in IMAGE_FOLDERS)


def data_target(name: str, host_path: Path) -> str:
    """Where a data path appears in the container: the same path, unless the image needs it."""
    path = PurePosixPath(host_path)
    return str(path) if same_path_ok(path) else f"{DATA_DIR}/{name}/{path.name}"


class DockerHandle(PreparedHandle):
    """One run's container: image, create, start, stream, wait, read state, remove."""

    pid = None  # no host process to record; the container is found by its run label

    def __init__(self, job: Job, config: Config, settings: ContainerSettings) -> None:
        super().__init__(job)
        self.config = config
        self.settings = settings
        self._container: Container | None = None
        self._started = False

    def cancel(self, grace_s: float) -> None:
        """Stop the container (SIGTERM, SIGKILL after `grace_s`), or the image build before it.

        Returns at once; wait() reports the end once the container or the build is gone.
        """
        self._cancel.set()  # an image build in progress is cut off (see build_image)
        with self._lock:
            container = self._container if self._started else None
        if container is not None:
            threading.Thread(target=_stop, args=(container, grace_s), daemon=True).start()
        else:  # waiting on another build's lock, or building the base image: do not wait long
            self._finish_cancelled_soon()

    # --- the lifecycle, on its own thread -------------------------------------------------

    def _lifecycle(self) -> ExitStatus:
        docker = import_docker()  # before any `import docker...`: see import_docker
        client = None
        status = ExitStatus(EXIT_SYSTEM_ERROR)
        try:
            client = docker_client(timeout=API_TIMEOUT_S)
            status = self._run(client)
        except DockerRuntimeError as exc:
            status = self._fail(exc.failure_class, str(exc))
        except UsageError as exc:  # a bad setting found while building (mllib.toml, requirements)
            status = self._fail(USER_ERROR, str(exc))
        except docker.errors.APIError as exc:
            status = self._fail(SYSTEM_ERROR, _engine_message(exc))
        except Exception as exc:  # the engine connection broke, or a bug: never hang the run
            status = self._fail(SYSTEM_ERROR, f"the Docker runtime failed: {exc!r}")
        finally:
            if self._container is not None:
                try:
                    _remove(self._container)
                except Exception as exc:
                    self._chunks.put(f"mllib: could not remove {self.ident}: {exc}\n".encode())
            if client is not None:
                client.close()
        return status

    def _run(self, client: DockerClient) -> ExitStatus:
        from mllib.runtime.images import ensure_image

        image = ensure_image(
            client,
            self.job.work_dir,
            self.config,
            code_dir=self.job.code_dir,
            progress=self._progress,
            cancel=self._cancel,
            env=EnvPlan.read(RunFolder(self.job.run_dir).env_plan_file),
        )
        options = container_options(self.job, self.settings, image)
        options["environment"].update(MLLIB_RUNTIME="docker", MLLIB_RUNTIME_ID=image)
        note = self._python_note(client, image)
        if note:
            self._progress(f"mllib: note: {note}")
            options["environment"]["MLLIB_ENV_NOTE"] = note
        with self._lock:
            if self._cancel.is_set():
                return ExitStatus(EXIT_CANCELLED)
            self._container = client.containers.create(**options)
            self.ident = self._container.name
            self._container.start()
            self._started = True
        container = self._container
        pump = threading.Thread(target=self._pump_logs, args=(container,), daemon=True)
        pump.start()
        result = container.wait(timeout=None)  # as long as the run takes
        pump.join(timeout=30)
        container.reload()
        state = container.attrs.get("State", {})
        return self._exit_status(int(result.get("StatusCode", -1)), bool(state.get("OOMKilled")))

    def _python_note(self, client: DockerClient, image: str) -> str | None:
        """A note when the image's Python is another minor version than the submitter's."""
        spec = RunFolder(self.job.run_dir).spec_or_none()
        labels = client.images.get(image).labels or {}
        have = labels.get("org.mllib.python", "")
        return (
            python_mismatch(have, spec.python or "", where=f"the image {image}") if spec else None
        )

    def _pump_logs(self, container: Container) -> None:
        try:
            for chunk in container.logs(stream=True, follow=True):
                self._chunks.put(chunk)
        except Exception as exc:  # the engine went away: the exit status will say more
            self._chunks.put(f"mllib: the container's output stopped: {exc}\n".encode())

    def _exit_status(self, code: int, oom: bool) -> ExitStatus:
        if oom:
            return ExitStatus(None, 9, oom=True, detail=self._oom_message())
        if 128 < code <= 128 + 64:  # docker-init exits 128+N when the worker died of signal N
            return ExitStatus(None, code - 128)
        return ExitStatus(code)

    def _oom_message(self) -> str:
        where = self.config.where
        if self.settings.memory:
            return (
                f"the run ran out of memory: it needed more than the {self.settings.memory} its "
                f"container may use ([runtime] memory in {where}). Raise the limit there, e.g. "
                f'memory = "16g", or use less memory (smaller batches or data).'
            )
        return (
            "the run ran out of memory: the host had none left for its container. Use less "
            f"memory, or set [runtime] memory in {where} to fail early at a known limit."
        )


def _stop(container: Container, grace_s: float) -> None:
    import docker.errors

    try:
        if grace_s <= 0:
            container.kill()
        else:
            container.stop(timeout=math.ceil(grace_s))
    except docker.errors.APIError:
        pass  # already gone, or already stopped


def _remove(container: Container) -> None:
    """Remove the container and its anonymous volumes; gone already is fine."""
    import docker.errors

    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if "already in progress" not in str(exc):
            raise


def _engine_message(exc: Exception) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    if "capabilities: [[gpu]]" in text:
        return (
            f"Docker could not give the container the GPUs nvidia-smi lists ({text}). Install the "
            'NVIDIA Container Toolkit, or set [runtime] gpus = "none" to run on CPU.'
        )
    return f"the Docker engine could not run the container: {text}"


def _safe(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", text)[:60]

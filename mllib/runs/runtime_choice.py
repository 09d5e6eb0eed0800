"""Which runtime a run gets, and why (said once to the user): asked for, as its training run's,
configured, or chosen by what answers here (docker when an engine answers, else process)."""

from __future__ import annotations

from mllib.credentials import configured_server
from mllib.errors import UsageError
from mllib.plugins import REMOTE_RUNTIME, SERVER_RUNTIME
from mllib.registry.runs import RunRecord
from mllib.runs.backend import backend_name, get_backend
from mllib.runtime import RUNTIMES
from mllib.workspace import Workspace

CLUSTER_RUNTIME = "ray"  # runs submitted to a Ray cluster (mllib.runtime.ray)


def select_runtime(
    ws: Workspace,
    requested: str | None,
    remote: bool,
    agent: str | None = None,
    *,
    gpus: list[str] | None = None,
    source: RunRecord | None = None,
) -> tuple[str, str]:
    """The runtime for a run and the reason it was chosen.

    `remote` sends it to the team server when one is configured (mllib.credentials); `remote`,
    `agent` (or the remote runtime asked for by name) otherwise send it to the backend of remote
    runs, which refuses here when it cannot place it (no agent configured, an unknown agent).
    `source`: the training run an evaluation or prediction uses; unless a runtime is asked for,
    a local one (process, or docker while an engine answers) is used again, so the model runs
    where it was trained. `[runtime] local = "auto"` (the default) picks docker when a Docker
    engine answers and has (or can build) the base image (see docker_problem), else process,
    and says why in the note recorded on the run (`runs rerun` keeps the runtime). `gpus`: the
    GPUs the run is given (an agent's slot), for the note.
    """
    cluster = _cluster_runtime(ws, requested, remote, agent)
    if cluster is not None:
        return cluster
    if (remote or requested == SERVER_RUNTIME) and not agent:
        url = configured_server(ws.project.config)
        if url is not None or requested == SERVER_RUNTIME:
            get_backend(backend_name(SERVER_RUNTIME)).check_placement(ws, None)
            return SERVER_RUNTIME, f"--remote: queued on the team server {url}"
    if remote or agent or requested == REMOTE_RUNTIME:
        get_backend(backend_name(REMOTE_RUNTIME)).check_placement(ws, agent)
        where = f"agent {agent} (--agent)" if agent else "an agent with a free slot"
        return REMOTE_RUNTIME, f"--remote: on {where}"
    if requested:
        if requested not in RUNTIMES:
            raise UsageError(
                f"Unknown runtime {requested!r}",
                hint=f"Choose one of: {', '.join([*RUNTIMES, REMOTE_RUNTIME])}.",
            )
        return requested, _with_gpu_note(requested, f"--runtime {requested}", gpus)
    if source is not None and source.runtime and _still_available(source.runtime, ws):
        return source.runtime, _with_gpu_note(source.runtime, f"as training run {source.id}", gpus)
    configured = ws.project.config.runtime.local
    if configured != "auto":
        if configured not in RUNTIMES:
            raise UsageError(
                f"mllib.toml: [runtime] local = {configured!r} is not a runtime",
                hint=f"Use auto or one of: {', '.join(RUNTIMES)}.",
            )
        return configured, _with_gpu_note(configured, f"[runtime] local = {configured!r}", gpus)
    problem = docker_problem(ws)
    if problem is None:
        from mllib.runtime.engine import engine_host

        return "docker", _with_gpu_note(
            "docker", f"auto: a Docker engine answers at {engine_host()}", gpus
        )
    return "process", _with_gpu_note(
        "process", f"auto: {problem}, so it runs as a local process", gpus
    )


def _cluster_runtime(
    ws: Workspace, requested: str | None, remote: bool, agent: str | None
) -> tuple[str, str] | None:
    """("ray", why) for `--runtime ray`, or `--remote` with `[runtime] remote = "ray"`; else
    None. Refused here when Ray is not installed, before the run is recorded."""
    configured = ws.project.config.runtime.remote
    if configured not in (REMOTE_RUNTIME, CLUSTER_RUNTIME):
        raise UsageError(
            f"mllib.toml: [runtime] remote = {configured!r} is not a remote runtime",
            hint=f"Use {REMOTE_RUNTIME} (agent hosts) or {CLUSTER_RUNTIME} (a Ray cluster).",
        )
    if requested == CLUSTER_RUNTIME:
        why = "--runtime ray"
    elif remote and not agent and requested is None and configured == CLUSTER_RUNTIME:
        why = "--remote with [runtime] remote = 'ray'"
    else:
        return None
    from mllib.runtime.ray.client import INSTALL_HINT, ray_missing
    from mllib.runtime.ray.settings import RaySettings

    missing = ray_missing()
    if missing:
        raise UsageError(f"--runtime ray: {missing}", hint=INSTALL_HINT)
    address = RaySettings.from_config(ws.project.config).cluster
    return CLUSTER_RUNTIME, f"{why}: a job on the Ray cluster at {address}"


def docker_problem(ws: Workspace) -> str | None:
    """None when `auto` may pick docker: an engine answers and it has the project's base image,
    or can have it (the default one, built here as root); else why not. A socket connect and
    one request on it: the docker SDK is not imported."""
    from mllib.runtime.engine import engine_problem, image_present

    problem = engine_problem()
    if problem is not None:
        return problem
    base = ws.project.config.runtime.base_image
    if image_present(base) is not False:
        return None
    from mllib.runtime.base_image import DEFAULT_TAG, base_build_problem

    why = base_build_problem() if base == DEFAULT_TAG else "mllib builds only its own base image"
    if why is None:
        return None
    return f"a Docker engine answers but has no base image {base} and cannot build it ({why})"


def _still_available(runtime: str, ws: Workspace) -> bool:
    """Whether a training run's recorded runtime can run here now (docker: see docker_problem)."""
    if runtime == "docker":
        return docker_problem(ws) is None
    return runtime in RUNTIMES


def _with_gpu_note(runtime: str, note: str, gpus: list[str] | None) -> str:
    if runtime == "docker":
        from mllib.runtime.gpus import gpu_note

        return f"{note}; {gpu_note(gpus)}"
    if gpus is not None:
        return f"{note}; GPU {','.join(gpus)} (CUDA_VISIBLE_DEVICES)"
    return note

"""Talking to a Ray cluster: a Jobs API client with the cluster's token, and `mllib ray check`.

Ray 2.60 turns token auth on by default: a client sends the token Ray finds itself
($RAY_AUTH_TOKEN, the file $RAY_AUTH_TOKEN_PATH names, or ~/.ray/auth_token) once
RAY_AUTH_MODE=token, which `[ray] auth` sets unless the environment already does. mllib never
reads, stores or prints the token.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mllib.errors import RuntimeUnavailableError
from mllib.runtime.ray.settings import RaySettings
from mllib.safetext import printable

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

COLOURS = re.compile(r"\x1b\[[0-9;]*m")  # ANSI SGR sequences
QUIET_LOGGERS = (
    "ray.dashboard.modules.job.sdk",
    "ray.dashboard.modules.dashboard_sdk",
    "ray._private.runtime_env.packaging",
)
INSTALL_HINT = "Install Ray beside mllib: pip install 'mllib[ray]'"


class RayUnavailable(RuntimeUnavailableError):
    """No Ray here, or no cluster answering at the configured address."""


def ray_missing() -> str | None:
    """Why Ray cannot be used from here (not installed), or None. Imports nothing."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed"
    return None


def connect(settings: RaySettings) -> JobSubmissionClient:
    """A Jobs API client of the cluster at `settings.cluster` (one request: its version)."""
    missing = ray_missing()
    if missing:
        raise RayUnavailable(f"the Ray runtime needs Ray: {missing}", hint=INSTALL_HINT)
    os.environ.setdefault("RAY_AUTH_MODE", settings.auth)
    from ray.job_submission import JobSubmissionClient

    # The client logs each closed log stream, and each package it builds and uploads (a shipped
    # run's), at INFO on the terminal: mllib says what matters.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return JobSubmissionClient(settings.cluster)
    except Exception as exc:  # ConnectionError, an auth RuntimeError: one line each
        raise RayUnavailable(
            f"no Ray cluster answers at {settings.cluster}: {first_line(exc)}",
            hint="Start one (ray start --head) or set [ray] address in mllib.toml; "
            "`mllib ray check` says what answers.",
        ) from exc


def first_line(exc: BaseException) -> str:
    """An exception's first line, for one-line errors (Ray's messages run to pages), as text a
    terminal shows as it is: without Ray's colours (its messages colour actor names), any other
    control character escaped (a job's message may quote what its entrypoint printed).

    >>> first_line(RuntimeError("\\x1b[36mray::JobSupervisor\\x1b[39m died\\x07\\nmore"))
    'ray::JobSupervisor died\\\\x07'
    """
    text = COLOURS.sub("", str(exc)).strip().splitlines()
    return printable(text[0][:300]) if text else type(exc).__name__


@dataclass(frozen=True)
class ClusterReport:
    """What `mllib ray check` says about a cluster."""

    address: str
    version: str
    auth: str  # token or disabled (as this client uses it)
    cpus_total: float
    cpus_free: float
    gpus_total: float
    gpus_free: float
    jobs_running: int

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def check(settings: RaySettings) -> ClusterReport:
    """Reach the cluster and read its version, free CPUs and GPUs, and running jobs."""
    client = connect(settings)
    version = client.get_version()
    try:
        resources = _cluster_resources(client)
    except Exception as exc:
        raise RayUnavailable(
            f"the Ray cluster at {settings.cluster} answered but its resources could not be "
            f"read: {first_line(exc)}"
        ) from exc
    running = sum(1 for job in client.list_jobs() if not job.status.is_terminal())
    return ClusterReport(
        address=settings.cluster,
        version=version,
        auth=os.environ.get("RAY_AUTH_MODE", settings.auth),
        jobs_running=running,
        **resources,
    )


def _cluster_resources(client: JobSubmissionClient) -> dict[str, float]:
    """Total and free CPUs and GPUs, from the dashboard's cluster status."""
    response = client._do_request("GET", "/api/cluster_status")
    response.raise_for_status()
    data = response.json()["data"]["clusterStatus"]
    usage = (data.get("loadMetricsReport") or {}).get("usage") or {}
    found = {}
    for name in ("CPU", "GPU"):
        used, total = usage.get(name, [0.0, 0.0])
        found[f"{name.lower()}s_total"] = float(total)
        found[f"{name.lower()}s_free"] = float(total) - float(used)
    return found

"""Stopping a deployment's processes (halt), and the stops that a command began and did not
finish, finished by the next command that looks at deployments: `mllib deploy stop` killed mid-stop (its intent is written in the deployment's
folder before anything is stopped), or a deploy or rollback killed after its new version went
live and before the one it replaces was stopped (two live rows of one environment). So an
environment never keeps two versions on its URL outside a canary split, and no row stays live
once its stop began. Each is recorded in `mllib deploy history` ("reconciled: ...").
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mllib.registry.runs import now
from mllib.serving.control import process, records
from mllib.serving.control.paths import serving_dir
from mllib.serving.control.records import Deployment
from mllib.serving.spec import write_private
from mllib.workspace import Workspace

STOP_FILE = "stopping.json"


def halt(
    ws: Workspace, dep: Deployment, grace_s: float, *, state: str, replaced_by: str | None = None
) -> None:
    """Stop every process of `dep` and record it `state`. What is being stopped is written in
    its folder first: a command killed meanwhile leaves it for the next one to finish."""
    intend_stop(dep, state=state, replaced_by=replaced_by)
    if dep.pid:
        process.stop(dep.pid, marker=dep.marker, grace_s=grace_s, records=records_of(dep))
    stop_on_agents(dep, grace_s)
    records.update(ws.registry, dep.id, state=state, stopped_at=now(), replaced_by=replaced_by)
    done(dep)


def stop_on_agents(dep: Deployment, grace_s: float) -> None:
    """What `dep` runs on agents stopped too (its controller stops them; this is for one that
    was killed first)."""
    from mllib.serving.control.fleet import SPEC_FILE, FleetSpec

    try:
        spec = FleetSpec.read(Path(dep.dir or "") / SPEC_FILE)
    except (OSError, ValueError, TypeError, KeyError):
        return
    if spec.agents:
        from mllib.serving.control.agentservers import stop_on_agents as stop_there

        stop_there(spec.deployment, spec.agents, grace_s)


def records_of(dep: Deployment) -> Path | None:
    """Where the processes of `dep` are recorded (None: a deployment without a folder)."""
    from mllib.serving import pids

    return pids.folder_of(dep.dir) if dep.dir else None


def deploying(ws: Workspace, env: str) -> bool:
    """Whether another process holds `env`'s deploy lock (a deploy, rollback or stop under way)."""
    from mllib.locks import holder

    pid = holder(serving_dir(ws) / "locks" / f"{env}.lock")
    return pid is not None and pid != os.getpid()


@contextmanager
def reconcile_lock(ws: Workspace) -> Iterator[None]:
    """One command at a time restarts a controller or finishes a stop (others wait, then see
    it done)."""
    from mllib.locks import file_lock

    with file_lock(
        serving_dir(ws) / "locks" / "reconcile.lock", what="the deployments' controller"
    ):
        yield


def intend_stop(dep: Deployment, *, state: str, replaced_by: str | None) -> None:
    """Say, in `dep`'s folder, that it is being stopped (and recorded `state`)."""
    if dep.dir and Path(dep.dir).is_dir():
        data = {"row": dep.id, "state": state, "replaced_by": replaced_by, "pid": os.getpid()}
        write_private(Path(dep.dir) / STOP_FILE, json.dumps(data))


def done(dep: Deployment) -> None:
    if dep.dir:
        (Path(dep.dir) / STOP_FILE).unlink(missing_ok=True)


def begun(dep: Deployment) -> dict[str, Any] | None:
    """The stop begun on `dep` (its row), if one was."""
    try:
        intent = json.loads((Path(dep.dir or "") / STOP_FILE).read_text())
    except (OSError, ValueError):
        return None
    return intent if intent.get("row") == dep.id else None


def finish(ws: Workspace) -> None:
    """Finish every stop left half-done (see the module's docstring)."""
    for dep in records.running(ws.registry):
        if dep.state != "live" or deploying(ws, dep.env):
            continue
        newest = records.live(ws.registry, dep.env)
        if begun(dep) or (newest is not None and newest.id != dep.id):
            _finish(ws, dep)


def _finish(ws: Workspace, dep: Deployment) -> None:
    from mllib.serving import audit
    from mllib.serving.clock import SystemClock
    from mllib.serving.control.settings import Settings

    with reconcile_lock(ws):
        dep = records.get(ws.registry, dep.id)
        newest = records.live(ws.registry, dep.env)
        intent = begun(dep)
        superseded = newest is not None and newest.id != dep.id
        if dep.state != "live" or deploying(ws, dep.env) or not (intent or superseded):
            return
        replaced_by = (intent or {}).get("replaced_by") or (newest.id if superseded else None)
        if superseded and newest.dir == dep.dir:  # a promotion's row: the same processes serve
            records.update(ws.registry, dep.id, state="stopped", replaced_by=newest.id)
            why = f"the promotion to {newest.label} was recorded half-way"
        else:
            grace = Settings.from_config(ws.project.config).deploy.stop_grace_s
            halt(ws, dep, grace, state=(intent or {}).get("state") or "stopped",
                 replaced_by=replaced_by)  # fmt: skip
            why = "stopped" + (f" (replaced by {newest.label})" if superseded else "")
        audit.record(
            ws.registry, SystemClock(), user=dep.user, action="stop", result="ok", env=dep.env,
            model=dep.model, version=dep.version, deployment_id=dep.id,
            reason=f"reconciled: {why}; the command doing it was interrupted",
        )  # fmt: skip

"""A deployment's replicas on this agent host: the agent's `serve`, `serve_status`, `serve_stop`
and `serve_capacity` requests.

mllib's controller (on the user's machine) sends the model's code and saved model as blobs, the
server's spec and the plan of its venv (the model's dependencies and LitServe's, pinned to the
controller's versions). Here the bundle is materialized, the venv built (once, in the agent's
venv cache) and the server started by the same code that starts one on the user's machine
(mllib.serving.control.servers), detached, its processes recorded in the deployment's `pids/`
folder, with its link on TCP at the agent's address: the gateway on the user's machine sends
it requests there, with the link's token. The agent holds no API keys, so the server's own HTTP
port (on this host's loopback) refuses every /predict; /health answers.

Folders: ROOT/serving/DEPLOYMENT/ (pids/, server.log, servers/SERVER/ with replica.json, the
server's state) and ROOT/serving/bundles/.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path
from typing import Any

SERVING_DIR = "serving"
STATE_FILE = "replica.json"
DEPLOYMENT_ID = re.compile(r"^d[a-z0-9]{1,32}$")  # mllib.serving.control.records' ids


def start(root: Path, store: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Start replica `request["server"]` of deployment `request["deployment"]`; `missing`
    (blobs to send again) when the store lacks some of its trees' blobs."""
    from mllib.registry.db import Registry
    from mllib.runtime.env_plan import EnvPlan
    from mllib.runtime.venvs import ensure_env
    from mllib.serving.control.servers import LocalServers
    from mllib.serving.spec import CODE_DIR, MODEL_DIR, VENV, KeyCheck, PythonEnv, ServerSpec
    from mllib.store import read_tree

    trees = [request["model_tree"], request["code_tree"]]
    missing = [sha for sha in trees if not store.has(sha)]
    for sha in set(trees) - set(missing):
        missing += [f.sha256 for f in read_tree(store, sha).files if not store.has(f.sha256)]
    if missing:
        return {"missing": missing}
    folder = deployment_dir(root, request["deployment"])
    folder.mkdir(parents=True, exist_ok=True)
    bundle = _bundle(root, store, request["model_tree"], request["code_tree"], MODEL_DIR, CODE_DIR)
    no_keys = folder / "no-keys.db"  # a registry without keys: HTTP /predict is refused here
    Registry.open(no_keys).close()
    env = ensure_env(EnvPlan.from_json(request["env_plan"]))
    try:
        template = ServerSpec.from_dict(request["spec"])
        template = dataclasses.replace(
            template,
            bundle_dir=str(bundle),
            keys=KeyCheck(str(no_keys)),
            python_env=PythonEnv(
                kind=VENV,
                python=env.python,
                key=env.key,
                why="a replica on an agent runs in a venv of the model's and server's packages",
                variables=env.variables(),
                lock=str(env.lock_path),
            ),
        )
        servers = LocalServers(folder, request["deployment"], bundle, slots=2)
        state = servers.start(
            template,
            server=request["server"],
            variant=template.variant,
            processes=1,
            ceiling=1,
            link_host=request["listen"],
        )
    finally:
        env.release()  # the server holds the venv itself now
    data = dataclasses.asdict(state)
    (Path(state.dir) / STATE_FILE).write_text(json.dumps(data))
    return {"started": True, "state": data}


def _bundle(root: Path, store: Any, model: str, code: str, model_dir: str, code_dir: str) -> Path:
    from mllib.store import materialize_tree

    folder = root / SERVING_DIR / "bundles" / f"{model[:16]}-{code[:16]}"
    if not (folder / ".complete").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        materialize_tree(store, model, folder / model_dir)
        materialize_tree(store, code, folder / code_dir)
        (folder / ".complete").write_text("")
    return folder


def status(root: Path, deployment: str, server: str) -> dict[str, Any]:
    """("ready" | "starting" | "failed" | "gone", why) of a replica started here."""
    from mllib.serving.control.servers import LocalServers, ServerState

    path = deployment_dir(root, deployment) / "servers" / server / STATE_FILE
    try:
        state = ServerState.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {"outcome": "gone", "why": "the agent has no record of it"}
    servers = LocalServers(deployment_dir(root, deployment), deployment, root, slots=2)
    outcome, why = servers.poll(state)
    return {"outcome": outcome, "why": why}


def stop(root: Path, deployment: str, grace_s: float = 10.0, server: str | None = None) -> dict:
    """Stop every process of `deployment` here (those of replica `server` alone when given):
    SIGTERM (a graceful drain), SIGKILL after `grace_s`; their folder goes too, so nothing of
    it is left on the host."""
    from mllib.serving import pids
    from mllib.serving.control import process

    folder = deployment_dir(root, deployment)
    if not folder.is_dir():
        return {"stopped": 0, "killed": 0}
    records = pids.folder_of(folder)
    found = len(pids.alive(records, server=server))
    outcome = process.stop_recorded(records, grace_s=grace_s, server=server)
    if server is None:
        shutil.rmtree(folder, ignore_errors=True)
    elif "/" not in server and server not in ("", ".", ".."):
        shutil.rmtree(folder / "servers" / server, ignore_errors=True)
    return {"stopped": found, "killed": outcome.killed}


def deployment_dir(root: Path, deployment: str) -> Path:
    if not DEPLOYMENT_ID.match(deployment):
        raise ValueError(f"not a deployment id: {deployment!r}")
    return root / SERVING_DIR / deployment


def running(root: Path) -> dict[str, int]:
    """Deployments with processes here, and how many."""
    from mllib.serving import pids

    found = {}
    for folder in sorted((root / SERVING_DIR).glob("*/" + pids.PIDS_DIR)):
        count = len(pids.alive(folder))
        if count:
            found[folder.parent.name] = count
    return found


def capacity(
    root: Path, deployment: str, *, active_runs: int, gpus: list[str] | None
) -> dict[str, Any]:
    """What this host has free for another replica of `deployment`, as the controller weighs it:
    its CPUs, the memory available, its GPUs (None without nvidia-smi), the runs it runs now and
    the replicas of every deployment served here; and `servers`, the replicas of `deployment`
    with a process running here (the controller stops those it no longer knows of)."""
    import os

    from mllib.serving import pids

    replicas = 0
    for folder in sorted((root / SERVING_DIR).glob("*/" + pids.PIDS_DIR)):
        replicas += len(pids.servers(folder))
    mine = pids.servers(pids.folder_of(deployment_dir(root, deployment)))
    return {
        "cpus": os.cpu_count() or 1,
        "memory_free_bytes": _memory_available(),
        "gpus": gpus,
        "active_runs": active_runs,
        "replicas": replicas,
        "servers": sorted(mine),
    }


def _memory_available() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes (None where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None

"""`python -m mllib_agent serve --root ROOT`: answer JSON-line requests on stdin/stdout.

One request per line, `{"id": N, "method": NAME, "params": {...}}`; one answer per line,
`{"id": N, "result": ...}` or `{"id": N, "error": {"type": ..., "message": ...}}`. The process
lives as long as the SSH channel; runs it starts are detached (own session, output to files) and
outlive it. Bulk bytes never pass through here: they go over SFTP into `incoming/` (then
`commit` verifies and stores them) or are read from the paths this server names.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllib_agent import PROTOCOL, feed, housekeeping, replicas


@dataclass
class StartRequest:
    """What `start` is sent: the run's record, params and spec, the trees it runs (already sent),
    its .env.remote values, the agent's slots and GPUs, and the store's size cap. `secret`: the
    params recorded as a marker; `secret_params`: those given on the command line, for the
    worker alone (a 0600 file it removes as it reads it)."""

    run: dict[str, Any]
    params: dict[str, Any]
    sources: dict[str, str]
    spec: dict[str, Any]
    code_tree: str
    input_model: str | None
    env: dict[str, str]
    slots: int
    agent: str
    datasets: list[dict[str, Any]] = field(default_factory=list)
    gpus: int = 0  # the GPUs the agent's runs share out, one each (0: none)
    cache_bytes: int | None = None
    secret: list[str] = field(default_factory=list)
    secret_params: dict[str, Any] = field(default_factory=dict)
    # What the run's venv or image holds, planned on the submitting machine (its pins).
    env_plan: dict[str, Any] | None = None


class Agent:
    """The handlers; each public method `h_NAME` answers method NAME."""

    def __init__(self, root: Path) -> None:
        self.root = root
        os.environ["MLLIB_REGISTRY"] = str(root / "registry.db")
        os.environ["MLLIB_STORE"] = str(root / "store")
        os.environ["MLLIB_ENV_CACHE"] = str(root / housekeeping.ENVS_DIR)  # project venvs
        from mllib.config import Config
        from mllib.project import Project
        from mllib.store import LocalBlobStore
        from mllib.workspace import Workspace

        self.ws = Workspace(Project(root, Config()))
        self.store = LocalBlobStore(root / "store")
        self.incoming = root / "incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)
        feed.install_feed(self.ws.registry.conn)

    # -- about the host ------------------------------------------------------------------------
    def h_hello(self) -> dict[str, Any]:
        installed = (self.root / "installed").read_text().strip()
        return {
            "protocol": PROTOCOL,
            "version": installed,
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "incoming": str(self.incoming),
        }

    def h_info(self) -> dict[str, Any]:
        from mllib.registry.runs import active_runs
        from mllib.runs.control import reconcile
        from mllib.runtime import RUNTIMES, get_runtime

        reconcile(self.ws)
        with self._start_lock(wait=False) as held:  # a start under way: the next info does it
            if held:
                housekeeping.drop_env_files(self.root, self.ws.registry)
        runtimes = {}
        for name in RUNTIMES:
            try:
                runtimes[name] = get_runtime(name).available()
            except Exception as exc:  # a runtime that cannot even load is unavailable
                runtimes[name] = f"{type(exc).__name__}: {exc}"
        usage = shutil.disk_usage(self.root)
        return {
            **self.h_hello(),
            "gpus": gpu_names(),
            "disk_free_bytes": usage.free,
            "runtimes": runtimes,
            "docker": runtimes.get("docker", "the docker runtime is not part of this mllib")
            is None,
            "docker_cli": shutil.which("docker"),
            "active_runs": [r.id for r in active_runs(self.ws.registry)],
        }

    # -- blobs -----------------------------------------------------------------------------------
    def h_missing(self, shas: list[str]) -> list[str]:
        """The blobs among `shas` the store lacks; those it has count as just used (see
        housekeeping: the cache evicts the least recently used first)."""
        wanted = list(dict.fromkeys(shas))
        missing = [s for s in wanted if not self.store.has(s)]
        housekeeping.mark_used(self.store, set(wanted) - set(missing))
        return missing

    def h_commit(self, items: list[dict[str, str]]) -> int:
        """Move uploaded files from incoming/ into the store, checking each one's sha256."""
        stored = 0
        for item in items:
            path = self.incoming / Path(item["name"]).name
            blob = self.store.put_file(path, move=True)
            if blob.sha256 != item["sha256"]:
                raise ValueError(
                    f"upload {item['name']} is corrupt: sha256 {blob.sha256}, "
                    f"expected {item['sha256']}"
                )
            stored += 1
        return stored

    def h_blob_paths(self, shas: list[str]) -> dict[str, str]:
        missing = [s for s in shas if not self.store.has(s)]
        if missing:
            raise FileNotFoundError(f"the agent's store lacks {', '.join(missing[:3])}")
        housekeeping.mark_used(self.store, shas)
        return {s: str(self.store.path(s)) for s in shas}

    # -- runs -------------------------------------------------------------------------------------
    def h_start(self, **request: Any) -> dict[str, Any]:
        """Start a run (a StartRequest) under mllib's own supervisor, detached. Answers `busy`
        when every slot is taken, and `missing` (send these again) when the store lost blobs
        since they were sent; a start that fails leaves nothing behind.

        The run's datasets (their chunks already sent) are materialised read-only here and
        handed to the run in the variables they name. With `gpus`, the run gets the GPU the
        fewest other active runs hold. Afterwards the store is trimmed to `cache_bytes`.
        """
        from mllib.registry.runs import active_runs
        from mllib.runs.control import reconcile

        req = StartRequest(**request)
        run_id = req.run["id"]
        with self._start_lock():
            missing = self.h_missing(_inputs(self.store, req))
            if missing:
                return {"missing": missing}
            reconcile(self.ws)
            reg = self.ws.registry
            housekeeping.drop_env_files(self.root, reg)  # of runs whose supervisor was killed
            active = [r for r in active_runs(reg) if r.id != run_id]
            if len(active) >= req.slots:
                return {"busy": True, "active": [r.id for r in active]}
            gpu = free_gpu(active, req.gpus)
            try:
                answer = self._start(req, gpu)
            except BaseException:
                with contextlib.suppress(Exception):  # the start's own error is the one to report
                    self._undo_start(run_id)
                raise
            if req.cache_bytes is not None:
                housekeeping.trim_cache(
                    reg, self.store, req.cache_bytes, self.root / housekeeping.ENVS_DIR
                )
        return answer

    def _start(self, req: StartRequest, gpu: int | None) -> dict[str, Any]:
        from mllib._version import __version__
        from mllib.config import load_config
        from mllib.project import Project
        from mllib.protocol.folder import RunFolder
        from mllib.protocol.spec import RunSpec
        from mllib.registry.runs import RunRecord, create_run, now
        from mllib.runs.background import spawn_supervisor
        from mllib.runs.runtime_choice import select_runtime
        from mllib.runtime.env_plan import EnvPlan
        from mllib.store import materialize_tree
        from mllib.workspace import Workspace

        run_id = req.run["id"]
        env = req.env
        if req.datasets:
            from mllib.datasets.remote import materialize_on_agent

            data = materialize_on_agent(self.root / "store", self.root / "data", req.datasets)
            housekeeping.mark_copies_used(self.root / "data", [d["sha256"] for d in req.datasets])
            env = {**env, **data}
        reg = self.ws.registry
        with reg.transaction():
            feed.forget_run(reg.conn, run_id)  # an earlier attempt of this run, here
        work = self.root / "work" / run_id
        shutil.rmtree(work, ignore_errors=True)
        materialize_tree(self.store, req.code_tree, work)
        write_env_file(work / housekeeping.ENV_FILE, env)  # runner.py removes it at the end
        project = Project(work, load_config(work / "mllib.toml"))
        rws = Workspace(project)
        run_dir = rws.run_dir(run_id)
        shutil.rmtree(run_dir, ignore_errors=True)
        gpus = None if gpu is None else [str(gpu)]
        RunSpec(**{**req.spec, "gpus": gpus}).write(run_dir)
        RunFolder(run_dir).write_secret_params(req.secret_params)
        housekeeping.write_agent_file(run_dir, [d["sha256"] for d in req.datasets])
        if req.input_model:
            materialize_tree(self.store, req.input_model, run_dir / req.spec["input_model"])
        if req.env_plan is not None:
            EnvPlan.from_json(req.env_plan).write(RunFolder(run_dir).env_plan_file)
        if req.cache_bytes is not None:  # the venv runtime keeps its venvs within it too
            os.environ["MLLIB_ENV_CACHE_BYTES"] = str(req.cache_bytes)
        runtime, note = agent_runtime(*select_runtime(rws, None, False, gpus=gpus))
        fields = {k: v for k, v in req.run.items() if k in RunRecord.__dataclass_fields__}
        fields["created_at"] = fields.get("created_at") or now()
        record = RunRecord(**{**fields, "status": "queued"})
        record.runtime, record.runtime_note = runtime, note
        record.host, record.project_dir = req.agent, str(work)
        record.run_dir, record.log_path = str(run_dir), str(RunFolder(run_dir).log_file)
        record.supervisor_pid, record.mllib_version = os.getpid(), __version__
        create_run(rws.registry, record, req.params, req.sources, req.secret)
        pid = spawn_supervisor(rws, run_id, module="mllib_agent.runner")
        return {
            "started": True,
            "runtime": runtime,
            "note": note,
            "gpus": gpus,
            "supervisor_pid": pid,
            "log_path": record.log_path,
        }

    def _undo_start(self, run_id: str) -> None:
        """A start that failed halfway leaves nothing behind: no record, folder or working copy."""
        reg = self.ws.registry
        with reg.transaction():
            feed.forget_run(reg.conn, run_id)
        for folder in (self.root / "work" / run_id, self.ws.run_dir(run_id)):
            shutil.rmtree(folder, ignore_errors=True)

    def h_release(self, run_ids: list[str]) -> dict[str, Any]:
        """mllib has synced these finished runs: remove their working copies and folders."""
        with self._start_lock():
            return housekeeping.release(self.root, self.ws.registry, run_ids)

    def h_prune(self, older_than_s: float, cache_bytes: int | None = None) -> dict[str, Any]:
        """Free disk: see housekeeping.prune. Reports what went and the disk's free bytes."""
        from mllib.runs.control import reconcile

        with self._start_lock():
            reconcile(self.ws)
            housekeeping.drop_env_files(self.root, self.ws.registry)
            report = housekeeping.prune(
                self.root,
                self.ws.registry,
                self.store,
                older_than_s=older_than_s,
                cap_bytes=cache_bytes,
            )
        report["disk_free_bytes"] = shutil.disk_usage(self.root).free
        return report

    # -- a deployment's replicas (replicas.py) -------------------------------------------------
    def h_serve(self, **request: Any) -> dict[str, Any]:
        """Start a replica of a deployment here (see replicas.start)."""
        return replicas.start(self.root, self.store, request)

    def h_serve_status(self, deployment: str, server: str) -> dict[str, Any]:
        return replicas.status(self.root, deployment, server)

    def h_serve_stop(
        self, deployment: str, grace_s: float = 10.0, server: str | None = None
    ) -> dict[str, Any]:
        return replicas.stop(self.root, deployment, grace_s, server)

    def h_serve_capacity(self, deployment: str) -> dict[str, Any]:
        """What this host has free for another replica (see replicas.capacity)."""
        from mllib.registry.runs import active_runs

        active = len(active_runs(self.ws.registry))
        return replicas.capacity(self.root, deployment, active_runs=active, gpus=gpu_names())

    def h_serving(self) -> dict[str, int]:
        """Deployments with processes running here, and how many."""
        return replicas.running(self.root)

    def h_status(self, run_id: str) -> dict[str, Any] | None:
        from mllib.runs.control import reconcile

        reconcile(self.ws)
        rows = self.ws.registry.query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return rows[0] if rows else None

    def h_cancel(self, run_id: str, timeout_s: float = 30.0) -> dict[str, Any] | None:
        from mllib.runs.control import cancel

        if self.h_status(run_id) is None:
            return None
        cancel(self.ws, run_id, timeout_s=timeout_s)
        return self.h_status(run_id)

    def h_changes(self, since: int, limit: int = 200) -> list[list[Any]]:
        from mllib.runs.control import reconcile

        reconcile(self.ws)
        return feed.changes(self.ws.registry.conn, since, limit)

    def h_pull(self, runs: dict[str, int]) -> dict[str, Any]:
        with self.ws.registry._lock:
            return {
                rid: feed.bundle(self.ws.registry.conn, rid, have) for rid, have in runs.items()
            }

    def _start_lock(self, *, wait: bool = True):
        return housekeeping.start_lock(self.root, wait=wait)


def _inputs(store, req: StartRequest) -> list[str]:
    """Every blob a start reads: the code and input model trees and files, the datasets'
    manifests and chunks (a manifest the store lacks stands for its chunks)."""
    from mllib.datasets.chunkstore import LocalChunkStore
    from mllib.datasets.errors import DatasetChangedError
    from mllib.datasets.materialize import load_manifest
    from mllib.store import read_tree

    shas = []
    for tree in filter(None, (req.code_tree, req.input_model)):
        shas.append(tree)
        if store.has(tree):
            shas += [f.sha256 for f in read_tree(store, tree).files]
    chunks = LocalChunkStore(store.root)
    for use in req.datasets:
        shas.append(use["sha256"])
        try:
            shas += load_manifest(chunks, use["sha256"]).chunk_digests
        except DatasetChangedError:
            continue  # missing: reported as such above
    return shas


def agent_runtime(runtime: str, note: str) -> tuple[str, str]:
    """The runtime a run gets here: as chosen for a local run, except that a process runs in
    the project's own venv (this agent's venv holds mllib's dependencies only, not the
    project's)."""
    if runtime == "process":
        return "venv", f"{note}; in a venv of the project's dependencies"
    return runtime, note


def free_gpu(active: list, gpus: int) -> int | None:
    """The GPU index (nvidia-smi's order) the fewest active runs hold; None without GPUs."""
    from mllib.protocol.spec import RunSpec

    if gpus <= 0:
        return None
    holders = dict.fromkeys(range(gpus), 0)
    for run in active:
        try:
            held = RunSpec.read(Path(run.run_dir)).gpus or []
        except (OSError, ValueError, TypeError):
            continue
        for index in held:
            if index.isdigit() and int(index) in holders:
                holders[int(index)] += 1
    return min(holders, key=lambda index: (holders[index], index))


def gpu_names() -> list[str] | None:
    """The host's NVIDIA GPUs as nvidia-smi names them; None when there is no nvidia-smi."""
    try:
        proc = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def write_env_file(path: Path, env: dict[str, str]) -> None:
    """The run's .env.remote values (they may hold secrets: 0600, never logged; removed when
    the run ends), written so mllib reads each value back exactly as it was sent."""
    from mllib.filemodes import write_private
    from mllib.project import format_env_file

    write_private(path, format_env_file(env))


def serve(agent: Agent, inp, out) -> None:
    for line in inp:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            handler = getattr(agent, "h_" + request["method"])
            answer = {"id": request.get("id"), "result": handler(**request.get("params", {}))}
        except Exception as exc:
            answer = {
                "id": request.get("id"),
                "error": {
                    "type": type(exc).__name__,
                    "message": str(exc),
                    "traceback": traceback.format_exc(),
                },
            }
        out.write(json.dumps(answer, default=str).encode() + b"\n")
        out.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mllib_agent")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--root", required=True, type=Path)
    args = parser.parse_args(argv)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # nothing but answers may reach the channel's stdout
    agent = Agent(args.root.resolve())
    out.write(json.dumps({"ready": True, **agent.h_hello()}).encode() + b"\n")
    out.flush()
    serve(agent, sys.stdin.buffer, out)
    return 0

"""What the runtime tests work with: the probe project, set up for a runtime, and polling.

A `RuntimeUnderTest` says how a project selects a runtime and how to tell whether anything of a
run is still running; the contract fixture in conftest.py lists the runtimes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mllib
from mllib.registry.artifacts import model_artifact
from mllib.registry.metrics import get_eval_metrics, metric_names, metric_series
from mllib.registry.runs import RunRecord, get_params
from mllib.workspace import Workspace
from tests.conftest import Result, run_cli

PROBE = Path(__file__).parent / "probe"


@dataclass
class AgentHost:
    """Where the ssh runtime's runs go: one real agent host (tests/agents/sshlab.py), added as
    agent `name`. Its files are readable here (the lab's hosts share this filesystem)."""

    name: str
    root: Path  # the agent's root on the host (~/.mllib-agent)
    outside: Path  # a folder of the host's user, for data the runs read by absolute path


@dataclass
class RuntimeUnderTest:
    """A runtime as the contract tests see it.

    A local runtime runs in the project folder; the ssh runtime (`agent` set) runs on an agent
    host, in the agent's working copy of the project, with .env.remote, and what a run reads by
    absolute path must be on that host; a shipping runtime (`ships`: Ray with `[ray] files =
    "ship"`) runs on a node that has none of this machine's files, in a copy of the code that
    the job brought, reading its data files from packages the job brought too. The differences
    are properties here, each saying why, so every scenario runs on every runtime.
    """

    name: str
    still_running: Callable[[RunRecord], list[str]]  # what of a run still runs (pids, containers)
    settings: dict[str, Any] = field(default_factory=dict)  # its [runtime] keys in mllib.toml
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)  # other mllib.toml tables
    agent: AgentHost | None = None
    ships: bool = False

    @property
    def options(self) -> dict[str, Any]:
        """What mllib.train() needs to use this runtime (the project's mllib.toml does the rest)."""
        return {"remote": True} if self.agent else {}

    @property
    def cli_args(self) -> list[str]:
        return ["--remote"] if self.agent else []

    @property
    def env_file(self) -> str:
        """The env file its runs read: --remote runs read .env.remote."""
        return ".env.remote" if self.agent else ".env.local"

    @property
    def local_runtime(self) -> str:
        """The runtime that predicts with its runs' models: predict runs here, on the model
        synced back from an agent."""
        return "process" if self.agent else self.name

    @property
    def note_start(self) -> str:
        """How the run's runtime_note starts: an agent's adds where and with what it ran."""
        if self.agent:
            return f"agent {self.agent.name}, venv runtime there ([runtime] local = 'process'"
        return f"[runtime] local = '{self.name}'"

    def workdir(self, project_root: Path, run_id: str) -> Path | None:
        """The folder the run works in: the project's, or the agent's working copy of it; None
        where it is the node's own copy, named by Ray (a shipped run's)."""
        if self.ships:
            return None
        return self.agent.root / "work" / run_id if self.agent else project_root

    @property
    def keeps_workdir(self) -> bool:
        """False where the run's working folder goes when it ends: an agent removes its working
        copy once the run is synced (its files written there go with it)."""
        return self.agent is None and not self.ships

    @property
    def absolute_project_paths(self) -> bool:
        """Whether this machine's absolute path into the project names the same file for the run:
        not on an agent or a node, whose run works in its own copy elsewhere (a relative path
        does)."""
        return self.agent is None and not self.ships

    @property
    def same_data_paths(self) -> bool:
        """Whether a data path given to a run is the path the run reads: not where the file
        travels in a package of the job's, unpacked where the node's Ray puts it."""
        return not self.ships

    def data_dir(self, project_root: Path) -> Path:
        """Where datasets given to runs are copied: the project's state, or the agent's."""
        return self.agent.root / "data" if self.agent else project_root / ".mllib" / "data"


@dataclass
class ProbeProject:
    """A copy of the probe project, set up for one runtime."""

    root: Path
    runtime: RuntimeUnderTest
    outside: Path  # a data folder outside the project, named by DATA_PATH in .env.local

    @property
    def model(self) -> str:
        return str(self.root / "model.py")

    def train(self, params: dict[str, Any] | None = None, **options: Any) -> RunRecord:
        """Train (and evaluate) through the Python API, collecting the run's output."""
        options.setdefault("evaluate", True)
        options.setdefault("echo", lambda _chunk: None)
        return mllib.train(self.model, params or {}, **self.runtime.options, **options)

    def cli(self, *args: str, **options: Any) -> Result:
        """Run `mllib ARGS` in the project folder, as a user would."""
        return run_cli(list(args), self.root, **options)

    def run_cli(self, *args: str, **options: Any) -> Result:
        """`mllib train|evaluate ARGS` on this project's runtime (--remote for ssh)."""
        return self.cli(*args, *self.runtime.cli_args, **options)


def make_project(
    folder: Path,
    runtime: RuntimeUnderTest,
    *,
    env: dict[str, str] | None = None,
    runtime_settings: dict[str, Any] | None = None,
) -> ProbeProject:
    """Copy the probe model into `folder`/project with mllib.toml and .env.local for `runtime`."""
    root = folder / "project"
    shutil.copytree(PROBE, root)
    outside = runtime.agent.outside if runtime.agent else folder / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "train.txt").write_text("outside data\nsecond line\nthird\n")
    if runtime.agent:  # the agent's user reads it
        shutil.chown(outside / "train.txt", outside.stat().st_uid, outside.stat().st_gid)
    settings = {"local": runtime.name, "cancel_grace_s": 2.0, **runtime.settings}
    settings.update(runtime_settings or {})
    lines = ['name = "probe"', 'model = "model.py:Probe"', "", "[params]", 'tag = "from-config"']
    tables = {"runtime": settings, **runtime.tables}
    for table, keys in tables.items():
        lines += [
            "",
            f"[{table}]",
            *(f"{key} = {toml_value(value)}" for key, value in keys.items()),
        ]
    (root / "mllib.toml").write_text("\n".join(lines) + "\n")
    variables = {
        "SECRET_SETTING": "s3cret",
        "EXTRA": "from-env-file",
        "DATA_PATH": str(outside / "train.txt"),
        **(env or {}),
    }
    (root / runtime.env_file).write_text("".join(f"{k}={v}\n" for k, v in variables.items()))
    return ProbeProject(root, runtime, outside)


def toml_value(value: Any) -> str:
    import json

    return json.dumps(value)


def process_leftovers(run: RunRecord) -> list[str]:
    from mllib.runtime.processes import is_alive

    return [f"pid {run.worker_pid}"] if is_alive(run.worker_pid, run.worker_ctime) else []


def agent_leftovers(host: Any, run: RunRecord, settle_s: float = 10.0) -> list[str]:
    """Processes of `run` (its supervisor, worker, their children) still on the agent host, once
    its supervisor had `settle_s` to exit after recording the end."""
    import time

    def found() -> list[str]:
        return [
            f"pid {p.pid} ({' '.join(p.info['cmdline'] or [])[:80]})"
            for p in host.processes()
            if any(run.id in arg for arg in p.info["cmdline"] or [])
        ]

    deadline = time.monotonic() + settle_s
    while (left := found()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def ray_leftovers(head: Any, run: RunRecord) -> list[str]:
    """Unfinished jobs of `run` on the head, and its worker if still alive here."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(head.address)
    jobs = [
        f"job {job.submission_id} ({job.status.value})"
        for job in client.list_jobs()
        if (job.metadata or {}).get("mllib_run") == run.id and not job.status.is_terminal()
    ]
    import psutil

    workers = []
    for proc in head.processes():
        try:
            if run.id in " ".join(proc.cmdline()) and proc.status() != psutil.STATUS_ZOMBIE:
                workers.append(f"pid {proc.pid}")
        except psutil.Error:
            pass
    return jobs + workers + process_leftovers(run)


def docker_leftovers(client: Any, run_id: str) -> list[str]:
    """Containers of `run_id` that still exist, running or not."""
    found = client.containers.list(all=True, filters={"label": f"org.mllib.run={run_id}"})
    return [f"container {c.name} ({c.status})" for c in found]


def outcome(root: Path, run_id: str) -> dict[str, Any]:
    """Everything a run produced that must not depend on where it ran."""
    registry = Workspace.find(root).registry
    return {
        "params": get_params(registry, run_id),
        "eval": get_eval_metrics(registry, run_id),
        "series": {n: metric_series(registry, run_id, n) for n in metric_names(registry, run_id)},
        "model": model_artifact(registry, run_id)["sha256"],
    }


def set_image_repository(root: Path, repository: str) -> None:
    """Give the template's mllib.toml this session's image repository, in its [runtime] table."""
    toml = root / "mllib.toml"
    text = toml.read_text()
    line = f'image_repository = "{repository}"\n'
    text = (
        text.replace("[runtime]\n", f"[runtime]\n{line}")
        if "[runtime]\n" in text
        else f"{text}\n[runtime]\n{line}"
    )
    toml.write_text(text)

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
class RuntimeUnderTest:
    """A runtime as the contract tests see it."""

    name: str
    still_running: Callable[[RunRecord], list[str]]  # what of a run still runs (pids, containers)
    settings: dict[str, Any] = field(default_factory=dict)  # its [runtime] keys in mllib.toml


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
        return mllib.train(self.model, params or {}, **options)

    def cli(self, *args: str, **options: Any) -> Result:
        """Run `mllib ARGS` in the project folder, as a user would."""
        return run_cli(list(args), self.root, **options)


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
    outside = folder / "outside"
    outside.mkdir()
    (outside / "train.txt").write_text("outside data\nsecond line\nthird\n")
    settings = {"local": runtime.name, "cancel_grace_s": 2.0, **runtime.settings}
    settings.update(runtime_settings or {})
    lines = ['name = "probe"', 'model = "model.py:Probe"', "", "[params]", 'tag = "from-config"']
    lines += ["", "[runtime]", *(f"{key} = {toml_value(value)}" for key, value in settings.items())]
    (root / "mllib.toml").write_text("\n".join(lines) + "\n")
    variables = {
        "SECRET_SETTING": "s3cret",
        "EXTRA": "from-env-file",
        "DATA_PATH": str(outside / "train.txt"),
        **(env or {}),
    }
    (root / ".env.local").write_text("".join(f"{k}={v}\n" for k, v in variables.items()))
    return ProbeProject(root, runtime, outside)


def toml_value(value: Any) -> str:
    import json

    return json.dumps(value)


def process_leftovers(run: RunRecord) -> list[str]:
    from mllib.runtime.processes import is_alive

    return [f"pid {run.worker_pid}"] if is_alive(run.worker_pid, run.worker_ctime) else []


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

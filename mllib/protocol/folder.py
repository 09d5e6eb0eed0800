"""RunFolder: the layout of a run's folder, which the supervisor, every runtime and the worker share.

A run's folder is where its runtime puts the worker's inputs and finds its outputs: the spec, the
event stream, the output log, the model and artifacts the worker leaves, a trained model to load,
and (for a moment) secret params given on the command line. The worker sees it as `--run-dir`,
wherever it runs (a child process, a container's bind mount, an agent's own folder), so every
name in it is relative to the folder:

>>> folder = RunFolder(Path(".mllib/runs/0123abcd"))
>>> folder.events_file.name, folder.model_dir.name
('events.jsonl', 'model')
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllib.protocol.events import EVENTS_FILE
from mllib.protocol.spec import SPEC_FILE, RunSpec


@dataclass(frozen=True)
class RunFolder:
    """One run's folder and the names of what it holds."""

    path: Path

    SPEC = SPEC_FILE
    EVENTS = EVENTS_FILE
    LOG = "output.log"  # the worker's stdout and stderr, merged (and a runtime's preparation)
    CODE = "code"  # a materialised code snapshot, when a rerun's code differs from the project's
    SECRET_PARAMS = "secret_params.json"  # secret params given on the command line, for the worker
    # Variables a runtime hands the worker in a 0600 file rather than through a cluster that
    # would keep them in its job table (the Ray runtime): the worker sets and removes them first.
    JOB_ENV = "job_env.json"
    MODEL = "model"  # where train saves the model
    ARTIFACTS = "artifacts"
    INPUT_MODEL = "input/model"  # where evaluate and predict find a trained model
    REQUEST = "input/request.json"
    PREDICTION = "output/prediction.json"
    SUPERVISOR_LOG = "supervisor.log"  # a background supervisor's own output
    SUPERVISOR_LOCK = "supervisor.lock"  # held by the one process following a run
    ENV_PLAN = "env-plan.json"  # what the run's venv or image holds (mllib.runtime.env_plan)

    @property
    def spec_file(self) -> Path:
        return self.path / self.SPEC

    @property
    def events_file(self) -> Path:
        return self.path / self.EVENTS

    @property
    def log_file(self) -> Path:
        return self.path / self.LOG

    @property
    def code_snapshot(self) -> Path:
        return self.path / self.CODE

    @property
    def model_dir(self) -> Path:
        return self.path / self.MODEL

    @property
    def artifact_dir(self) -> Path:
        return self.path / self.ARTIFACTS

    @property
    def input_model_dir(self) -> Path:
        return self.path / self.INPUT_MODEL

    @property
    def request_file(self) -> Path:
        return self.path / self.REQUEST

    @property
    def prediction_file(self) -> Path:
        return self.path / self.PREDICTION

    @property
    def supervisor_log(self) -> Path:
        return self.path / self.SUPERVISOR_LOG

    @property
    def supervisor_lock(self) -> Path:
        return self.path / self.SUPERVISOR_LOCK

    @property
    def env_plan_file(self) -> Path:
        return self.path / self.ENV_PLAN

    def code_dir(self, project_root: Path) -> Path:
        """The code the run executes: its own snapshot when it has one, else the project."""
        return self.code_snapshot if self.code_snapshot.is_dir() else project_root

    def read_spec(self) -> RunSpec:
        return RunSpec.read(self.path)

    def spec_or_none(self) -> RunSpec | None:
        """The run's spec, or None when the folder holds none (it was never written or is gone)."""
        return self.read_spec() if self.spec_file.is_file() else None

    def write_secret_params(self, values: dict[str, Any]) -> None:
        """Hand secret params given on the command line to the worker, in a 0600 file."""
        from mllib.filemodes import write_private

        if values:
            self.path.mkdir(parents=True, exist_ok=True)
            write_private(self.path / self.SECRET_PARAMS, json.dumps(values))

    def read_secret_params(self, *, remove: bool = False) -> dict[str, Any]:
        """The secret params `write_secret_params` left ({} when none); `remove`: the worker
        takes them, so they stay on disk no longer than the run's start."""
        path = self.path / self.SECRET_PARAMS
        try:
            values: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        if remove:
            os.unlink(path)
        return values

    def write_job_env(self, variables: dict[str, str]) -> None:
        """Hand the worker environment variables in a 0600 file it reads and removes at start."""
        from mllib.filemodes import write_private

        self.path.mkdir(parents=True, exist_ok=True)
        write_private(self.path / self.JOB_ENV, json.dumps(variables))

    def take_job_env(self) -> dict[str, str]:
        """The variables `write_job_env` left ({} when none), removed from disk as they are read."""
        path = self.path / self.JOB_ENV
        try:
            variables: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        os.unlink(path)
        return variables

    def discard_secret_params(self) -> None:
        """Remove what `write_secret_params` and `write_job_env` left, for a run that ended before
        its worker took it (cancelled while queued, a runtime that could not start): secrets
        outlive no run."""
        (self.path / self.SECRET_PARAMS).unlink(missing_ok=True)
        (self.path / self.JOB_ENV).unlink(missing_ok=True)

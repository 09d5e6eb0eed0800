"""RunSpec: everything the worker needs to know about a run, stored as spec.json in the run folder.

Paths in it are relative (to the code folder or the run folder) so the same spec works wherever
a runtime mounts or copies those folders. Secrets never go here: they arrive as environment,
or (secret params given on the command line) in SECRETS_FILE, 0600, which the worker removes
as it reads it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SPEC_FILE = "spec.json"
SECRETS_FILE = "secret_params.json"  # secret params given on the command line, for the worker
MODEL_DIR = "model"  # where train saves the model, relative to the run folder
ARTIFACT_DIR = "artifacts"
INPUT_MODEL_DIR = "input/model"  # where evaluate/predict find a trained model
REQUEST_FILE = "input/request.json"
PREDICTION_FILE = "output/prediction.json"


@dataclass
class RunSpec:
    run_id: str
    actions: list[str]  # "train", "evaluate", "predict" in that order
    model_file: str  # relative to the code folder
    model_class: str
    cli_params: dict[str, Any] = field(default_factory=dict)
    config_params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    input_model: str | None = None
    # The GPUs the run is given, by index in nvidia-smi's order (an agent's slot); None: the
    # runtime's default (every GPU the host has).
    gpus: list[str] | None = None

    def write(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / SPEC_FILE).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, run_dir: Path) -> RunSpec:
        return cls(**json.loads((run_dir / SPEC_FILE).read_text()))


def write_secret_params(run_dir: Path, values: dict[str, Any]) -> None:
    """Hand secret params given on the command line to the worker, in a 0600 file of the run."""
    from mllib.filemodes import write_private

    if values:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_private(run_dir / SECRETS_FILE, json.dumps(values))


def read_secret_params(run_dir: Path, *, remove: bool = False) -> dict[str, Any]:
    """The secret params `write_secret_params` left for the run ({} when none); `remove`: the
    worker takes them, so they stay on disk no longer than the run's start."""
    path = run_dir / SECRETS_FILE
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    if remove:
        os.unlink(path)
    return values


def discard_secret_params(run_dir: Path) -> None:
    """Remove what `write_secret_params` left, for a run that ended before its worker took it
    (cancelled while queued, a runtime that could not start): secrets outlive no run."""
    (run_dir / SECRETS_FILE).unlink(missing_ok=True)

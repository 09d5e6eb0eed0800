"""RunSpec: everything the worker needs to know about a run, stored as spec.json in the run folder.

Paths in it are relative (to the code folder or the run folder) so the same spec works wherever
a runtime mounts or copies those folders. Secrets never go here: they arrive as environment,
or (secret params given on the command line) in the run folder's secret params file, 0600,
which the worker removes as it reads it (see mllib.protocol.folder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

SPEC_FILE = "spec.json"


@dataclass
class RunSpec:
    run_id: str
    actions: list[str]  # "train", "evaluate", "predict" in that order
    model_file: str  # relative to the code folder
    model_class: str
    cli_params: dict[str, Any] = field(default_factory=dict)
    config_params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    input_model: str | None = None  # relative to the run folder (RunFolder.INPUT_MODEL)
    # The GPUs the run is given, by index in nvidia-smi's order (an agent's slot); None: the
    # runtime's default (every GPU the host has).
    gpus: list[str] | None = None
    # The variables the model's params read with `env=`, found when the run was prepared: the
    # supervisor hands the worker their values from its own environment. None: a spec written
    # by an mllib that did not record them (they are read from the model's source then).
    param_env: list[str] | None = None
    # The Python version of the machine that submitted the run ("3.11.7"): a runtime that
    # cannot give the run the same minor version says so, and `runs show` compares.
    python: str | None = None

    def write(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # JSON copies them anyway
        (run_dir / SPEC_FILE).write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, run_dir: Path) -> RunSpec:
        return cls(**json.loads((run_dir / SPEC_FILE).read_text()))

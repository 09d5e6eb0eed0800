"""What a run's environment holds, decided once, on the machine that submits the run.

A venv (here or on an agent) and a Docker image are built from the same plan: the project's
requirements as pip reads them (mllib.runtime.requirements), the installed packages its code
imports, the worker's own dependencies, and every one of them pinned to the version installed
on the submitting machine. The plan is written into the run's folder when the run is prepared
(`RunFolder.env_plan_file`), so an agent builds what the user's machine has, not what the
agent's own venv happens to hold::

    plan = plan_environment(project.root, project.config, step="train")
    plan.write(folder.env_plan_file)
    for name, text in plan.install_steps(): ...  # what an installer runs, in order

A locked requirements file (`--hash` lines, from `uv pip compile --generate-hashes`) is
installed first and alone, with hashes required, exactly as locked; everything else follows
in a second step that may not move a locked version (they become constraints).
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllib.config import Config
from mllib.runtime.requirements import (
    Requirement,
    host_pins,
    project_requirements,
    worker_requirements,
)

# The steps of a run whose environments may differ (see mllib.runtime.imports).
STEPS = ("train", "evaluate", "serve")


@dataclass(frozen=True)
class InstallStep:
    """One installer call: a requirements file, a constraints file, and whether every
    requirement must carry a hash (a lock)."""

    requirements: str  # file name
    constraints: str | None
    require_hashes: bool


@dataclass(frozen=True)
class EnvPlan:
    """The dependencies of one step of a run, and the submitting machine's versions of them."""

    requirements: tuple[Requirement, ...]
    pins: dict[str, str]
    python: str = field(default_factory=platform.python_version)  # the submitting machine's
    step: str = "train"

    @property
    def packages(self) -> list[Requirement]:
        return [r for r in self.requirements if r.is_package]

    @property
    def locked(self) -> list[Requirement]:
        """The packages a lock gives with hashes: installed first, exactly as locked."""
        return [r for r in self.packages if r.hashes]

    @property
    def options(self) -> list[Requirement]:
        return [r for r in self.requirements if r.is_option]

    @property
    def constraints(self) -> list[Requirement]:
        return [r for r in self.requirements if r.constraint]

    def files(self) -> dict[str, str]:
        """File name -> content of what the installer reads (see `install_steps`)."""
        options = "".join(f"{r.text}\n" for r in self.options)
        locked = self.locked
        unlocked = [r for r in self.packages if not r.hashes]
        locked_pins = [_locked_pin(r) for r in locked]
        constraint_lines = [
            *(r.text for r in self.constraints),
            *(pin for pin in locked_pins if pin),
            *(f"{name}=={version}" for name, version in self.pins.items()),
        ]
        files = {
            "requirements.txt": options + "".join(f"{r.line}\n" for r in unlocked),
            "constraints.txt": "".join(f"{line}\n" for line in dict.fromkeys(constraint_lines)),
        }
        if locked:
            files["locked.txt"] = options + "".join(f"{r.line}\n" for r in locked)
        return files

    def install_steps(self) -> list[InstallStep]:
        """The installer calls that build this plan, in order."""
        steps = []
        if self.locked:
            steps.append(InstallStep("locked.txt", None, True))
        steps.append(InstallStep("requirements.txt", "constraints.txt", False))
        return steps

    def digest(self) -> str:
        """A hash of everything an installer is given (not of the step or the submitter's
        Python, which the environment's own key covers)."""
        return hashlib.sha256(json.dumps(self.files(), sort_keys=True).encode()).hexdigest()

    def names(self) -> list[str]:
        """The packages asked for, by name (for messages)."""
        return sorted({r.name for r in self.packages})

    def to_json(self) -> dict[str, Any]:
        return {
            "requirements": [r.to_json() for r in self.requirements],
            "pins": self.pins,
            "python": self.python,
            "step": self.step,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EnvPlan:
        return cls(
            tuple(Requirement.from_json(r) for r in data["requirements"]),
            dict(data["pins"]),
            data["python"],
            data["step"],
        )

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> EnvPlan | None:
        """The plan written at `path`, or None when there is none."""
        try:
            return cls.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            return None


def plan_environment(
    root: Path,
    config: Config,
    *,
    code_dir: Path | None = None,
    step: str = "train",
    model_modules: list[str] | None = None,
    server: bool = False,
) -> EnvPlan:
    """The plan for `step` of a run of the project at `root` (see the module docstring); with
    `server`, for a model server (mllib.serving.server) rather than a worker.

    `code_dir` (default: `root`) is the code the run executes; the installed packages it
    imports are added unless `[runtime] detect_imports = false` (for `evaluate` and `serve`
    only those the step's own code reaches, plus `model_modules`: what the trained model's
    pickle names). Bad requirement lines raise a user error naming them.
    """
    declared = project_requirements(root, config)
    detected = _detected(code_dir or root, config, declared, step, model_modules)
    requirements = (*declared, *detected, *worker_requirements(server=server))
    pins = host_pins([r.text for r in requirements if r.is_package], declared=declared)
    return EnvPlan(tuple(requirements), pins, platform.python_version(), step)


def _detected(
    code_dir: Path,
    config: Config,
    declared: list[Requirement],
    step: str,
    model_modules: list[str] | None,
) -> list[Requirement]:
    """Requirements for the installed packages the code imports and `declared` lacks."""
    if not config.runtime.detect_imports:
        return []
    from mllib.runtime.imports import imported_distributions

    names = {r.name for r in declared if r.is_package}
    found = imported_distributions(code_dir, step=step, extra_modules=model_modules)
    requirements = [Requirement(dist, why) for dist, why in found.items()]
    return [r for r in requirements if r.name not in names]


def _locked_pin(req: Requirement) -> str | None:
    """`name==version` of a locked requirement (what the second install step may not move)."""
    from packaging.requirements import Requirement as Parsed

    parsed = Parsed(req.text)
    exact = [s.version for s in parsed.specifier if s.operator in ("==", "===")]
    return f"{parsed.name}=={exact[0]}" if exact else None

"""What model code calls while it runs: log_metric, log_metrics, log_artifact, artifact_dir.

Inside a run (started by `mllib train`/`evaluate`) these record to the run. Outside one (plain
`python model.py`, a notebook) they never fail: metrics are checked and then dropped, artifacts
are left where they are, and artifact_dir() is a temporary folder; a one-line notice says so once.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllib.errors import SerializationError


@dataclass
class ActiveRun:
    """The run this process is executing (set by the worker, None elsewhere)."""

    id: str
    artifact_dir: Path
    writer: Any  # mllib.protocol.events.EventWriter
    params: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)


_active: ActiveRun | None = None
_noticed: set[str] = set()
_scratch_dir: Path | None = None


def current_run() -> ActiveRun | None:
    """The active run, or None outside `mllib train`/`evaluate`."""
    return _active


def _set_active(run: ActiveRun | None) -> None:
    global _active
    _active = run


def _notice(what: str, message: str) -> None:
    if what not in _noticed:
        _noticed.add(what)
        print(f"mllib: {message}", file=sys.stderr)


def _number(name: str, value: Any, what: str = "log_metric") -> float:
    if isinstance(value, str | bytes | bool) or value is None:
        raise SerializationError(
            f"{what}({name!r}, ...) needs a number, got {type(value).__name__} {value!r}"
        )
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SerializationError(
            f"{what}({name!r}, ...) needs a number, got {type(value).__name__}"
        ) from None
    return number  # NaN and ±inf too: a diverged training shows as such


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Record one value of a metric; without `step`, steps count 0, 1, 2... per metric name."""
    if not isinstance(name, str) or not name:
        raise SerializationError(f"Metric names are non-empty strings, got {name!r}")
    number = _number(name, value)
    run = _active
    if run is None:
        _notice(
            "metric", "not inside an mllib run: log_metric() checks the value and records nothing"
        )
        return
    if step is None:
        step = run.steps.get(name, -1) + 1
    run.steps[name] = int(step)
    run.writer.metric(name, number, int(step))


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Record several metrics at the same step."""
    for name, value in metrics.items():
        log_metric(name, value, step)


def artifact_dir() -> Path:
    """The folder whose files are kept with the run (a temporary folder outside a run)."""
    global _scratch_dir
    if _active is not None:
        return _active.artifact_dir
    if _scratch_dir is None:
        _scratch_dir = Path(tempfile.mkdtemp(prefix="mllib-artifacts-"))
        _notice(
            "artifacts",
            f"not inside an mllib run: artifact_dir() is the temporary folder {_scratch_dir}",
        )
    return _scratch_dir


def log_artifact(path: str | Path, name: str | None = None) -> Path:
    """Keep a file or folder with the run (copied into artifact_dir()); returns where it was kept."""
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"log_artifact: {source} does not exist")
    if _active is None:
        _notice("artifact", "not inside an mllib run: log_artifact() leaves the file where it is")
        return source
    relative = Path(name or source.name)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(
            f"log_artifact: name must be a relative path inside the run, got {relative}"
        )
    target = _active.artifact_dir / relative
    if source.resolve() == target.resolve():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target)
    return target

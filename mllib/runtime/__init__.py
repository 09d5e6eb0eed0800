"""Runtimes by name, imported only when chosen (so `mllib --help` never imports docker or paramiko)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mllib.errors import UsageError

if TYPE_CHECKING:
    from mllib.runtime.base import Runtime

RUNTIMES = {
    "process": "mllib.runtime.process:ProcessRuntime",
    "venv": "mllib.runtime.venv:VenvRuntime",
    "docker": "mllib.runtime.docker:DockerRuntime",
    "ray": "mllib.runtime.ray:RayRuntime",  # a job on a Ray cluster: the `ray` extra
}


def get_runtime(name: str) -> Runtime:
    """An instance of the runtime registered as `name`."""
    if name not in RUNTIMES:
        raise UsageError(f"Unknown runtime {name!r}", hint=f"Choose one of: {', '.join(RUNTIMES)}.")
    module_name, _, class_name = RUNTIMES[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)()

"""The worker protocol: what the supervisor, every runtime and the worker agree on.

A run is handed to the worker as a folder (RunFolder: its spec, and where outputs go) and a
command line (worker_argv); the worker answers with an event stream (events) and an exit status,
which classify() turns into the run's Outcome and failure class. Everything here depends only on
mllib's core modules (see the README's Architecture section), so runtime/ and worker/ can import
it without importing the registry, the backends or the CLI.

The names below are imported from their modules when first used, so importing one module of the
protocol (mllib.protocol.failure, say) costs only that module.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "WORKER_MODULE": "argv",
    "parse_worker_argv": "argv",
    "worker_argv": "argv",
    "EventReader": "events",
    "EventWriter": "events",
    "report_failure": "events",
    "SYSTEM_ERROR": "failure",
    "USER_ERROR": "failure",
    "ExitStatus": "failure",
    "Outcome": "failure",
    "classify": "failure",
    "RunFolder": "folder",
    "RunSpec": "spec",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"mllib.protocol.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'mllib.protocol' has no attribute {name!r}")

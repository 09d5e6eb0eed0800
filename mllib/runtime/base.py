"""The runtime interface: a runtime decides only *where* the worker entrypoint runs.

Everything else (the registry, logs, metrics, artifacts, cancellation policy) lives once above the
runtimes, in the run's backend (mllib.runs.backend). A runtime starts `python -m mllib.worker`
(mllib.protocol.argv) for a Job and hands back a RunHandle to stream its output, wait for it and
stop it; how the worker ended is an ExitStatus (mllib.protocol.failure).

>>> runtime = get_runtime("process")  # doctest: +SKIP
>>> handle = runtime.start(job)  # doctest: +SKIP
>>> for chunk in handle.output():  # doctest: +SKIP
...     sys.stdout.buffer.write(chunk)
>>> handle.wait()  # doctest: +SKIP
ExitStatus(code=0, signal=None, oom=False, detail=None)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mllib.protocol.failure import ExitStatus


@dataclass
class Job:
    """One execution of the worker: which run folder, which code, where, with what environment."""

    run_id: str
    run_dir: Path  # holds spec.json; receives events, the model and artifacts
    code_dir: Path  # the model file is found relative to this
    work_dir: Path  # the working directory: the project root, where relative data paths resolve
    env: dict[str, str] = field(default_factory=dict)  # added to the runtime's own environment
    # env var -> host file or folder the run reads: the variable names it wherever the worker runs
    # (the Docker runtime mounts it read-only and rewrites the variable when the path differs).
    data_mounts: dict[str, Path] = field(default_factory=dict)
    # Lines a runtime reports while it prepares the run (building an image); None: into output().
    progress: Callable[[str], None] | None = None
    # The GPUs the run may use, by index in nvidia-smi's order (an agent gives each run its own);
    # None: every GPU the host has. The process runtime sets CUDA_VISIBLE_DEVICES, the Docker
    # runtime passes only these to the container.
    gpus: list[str] | None = None
    # The files of `code_dir` (relative, "/"-separated) that make the run's code, for a runtime
    # that copies it elsewhere (the Ray runtime ships them); None: all of the folder.
    code_files: list[str] | None = None

    def gpu_env(self) -> dict[str, str]:
        """CUDA_VISIBLE_DEVICES (in nvidia-smi's order, which CUDA_DEVICE_ORDER makes CUDA's)
        for a worker that sees the host's GPUs; empty when the run may use them all."""
        if self.gpus is None:
            return {}
        return {"CUDA_VISIBLE_DEVICES": ",".join(self.gpus), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


class RunHandle(Protocol):
    ident: str  # a pid or container id, for display and records

    def output(self) -> Iterator[bytes]:
        """The worker's stdout and stderr, merged, as it is produced, until it exits."""

    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        """The exit status, or None if still running after `timeout` seconds."""

    def cancel(self, grace_s: float) -> None:
        """Stop the worker and everything it started: SIGTERM, then SIGKILL after `grace_s`."""


class Runtime(Protocol):
    """Where the worker runs. A runtime may also define `reap(run_id, grace_s)`: end whatever a
    run left running after its supervisor died (the Docker runtime removes its container)."""

    name: str

    def available(self) -> str | None:
        """None when usable here, else the reason it is not."""

    def start(self, job: Job) -> RunHandle: ...


def host_python() -> str:
    return sys.executable

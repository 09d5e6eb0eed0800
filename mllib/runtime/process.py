"""The process runtime: the worker as a local child process in its own session (process group)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

from mllib.protocol.argv import worker_argv
from mllib.protocol.failure import ExitStatus
from mllib.runtime.base import Job, host_python
from mllib.runtime.processes import kill_tree


class ProcessRuntime:
    """Runs the worker with this Python, in the project folder. Always available."""

    name = "process"

    def __init__(self, python: str | None = None) -> None:
        self.python = python or host_python()

    def available(self) -> str | None:
        return None

    def start(self, job: Job) -> ProcessHandle:
        data = {name: str(path) for name, path in job.data_mounts.items()}  # see Job.data_mounts
        env = {**os.environ, **data, **job.env, **job.gpu_env(), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            worker_argv(self.python, job.run_dir, job.code_dir),
            cwd=job.work_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the supervisor, which ends the whole tree
        )
        return ProcessHandle(proc)


class ProcessHandle:
    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.ident = str(proc.pid)

    def output(self) -> Iterator[bytes]:
        assert self.proc.stdout is not None
        try:
            while chunk := self.proc.stdout.read1(65536):
                yield chunk
        finally:
            self.proc.stdout.close()

    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return ExitStatus(code, None) if code >= 0 else ExitStatus(None, -code)

    def cancel(self, grace_s: float) -> None:
        kill_tree(self.pid, grace_s, root_done=lambda: self.proc.poll() is not None)

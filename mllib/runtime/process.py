"""The process runtime: the worker as a local child process in its own session (process group)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

from mllib.protocol.argv import worker_argv
from mllib.protocol.failure import ExitStatus
from mllib.runtime import forkserver
from mllib.runtime.base import Job, host_python
from mllib.runtime.processes import kill_tree


class ProcessRuntime:
    """Runs the worker with this Python, in the project folder. Always available.

    `python`, `extra_env` and `pass_fds` let another runtime start the worker the same way
    with another interpreter (the venv runtime: the venv's python, its path, its lock)."""

    name = "process"

    def __init__(
        self,
        python: str | None = None,
        *,
        extra_env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self.python = python or host_python()
        self.extra_env = extra_env or {"MLLIB_RUNTIME": "process", "MLLIB_RUNTIME_ID": sys.prefix}
        self.pass_fds = pass_fds

    def available(self) -> str | None:
        return None

    def start(self, job: Job) -> ProcessHandle | forkserver.WarmHandle:
        """The worker for `job`: forked from the study's warm workers when a study is driven
        and the run fits them (mllib.runtime.forkserver), else a new Python process."""
        data = {name: str(path) for name, path in job.data_mounts.items()}  # see Job.data_mounts
        env = {**os.environ, **data, **job.env, **job.gpu_env(), **self.extra_env}
        env["PYTHONUNBUFFERED"] = "1"
        argv = worker_argv(self.python, job.run_dir, job.code_dir)
        warm = forkserver.active()
        if warm is not None and self.python == host_python() and not self.pass_fds:
            handle = warm.start(self.python, argv[4:], job.work_dir, env)
            if handle is not None:
                return handle
        proc = subprocess.Popen(
            argv,
            cwd=job.work_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the supervisor, which ends the whole tree
            pass_fds=self.pass_fds,
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

"""The venv runtime: the worker as a child process, in a venv of the project's own dependencies.

Everything the process runtime does (the project folder as working directory, the run's
environment, a process group ended whole on cancel), but with the venv's python, built from
the run's environment plan (mllib.runtime.env_plan: requirements.txt as pip reads it,
pyproject dependencies, `[runtime] packages`, detected imports, pinned to the submitting
machine's versions) by uv, or pip where uv is missing, and cached by content
(mllib.runtime.venvs): the second run with the same dependencies starts without installing
anything. It is what an agent without Docker runs projects in, and locally
`[runtime] local = "venv"` or `--runtime venv`.

A requirement that cannot be installed fails the run as a `user_error` naming its line; a
package index that cannot be reached as a `system_error` (retried on agents).

>>> handle = VenvRuntime().start(job)  # doctest: +SKIP
"""

from __future__ import annotations

import threading

from mllib.errors import MllibError
from mllib.project import Project
from mllib.protocol.failure import EXIT_CANCELLED, SYSTEM_ERROR, USER_ERROR, ExitStatus
from mllib.protocol.folder import RunFolder
from mllib.runtime.base import Job
from mllib.runtime.env_plan import EnvPlan, plan_environment
from mllib.runtime.forkserver import WarmHandle
from mllib.runtime.install_errors import classify_install_failure
from mllib.runtime.installer import InstallCancelled, InstallFailed
from mllib.runtime.prepared import PreparedHandle
from mllib.runtime.process import ProcessHandle, ProcessRuntime
from mllib.runtime.venvs import Env, cap_bytes, ensure_env


class VenvRuntime:
    """Runs the worker with the python of the project's cached venv. Always available."""

    name = "venv"

    def available(self) -> str | None:
        return None

    def start(self, job: Job) -> VenvHandle:
        handle = VenvHandle(job)
        handle.begin()
        return handle


class VenvHandle(PreparedHandle):
    """One run: its venv found or built, then the worker started with its python."""

    def __init__(self, job: Job) -> None:
        super().__init__(job)
        self._worker: ProcessHandle | WarmHandle | None = None
        self._plan: EnvPlan | None = None

    def cancel(self, grace_s: float) -> None:
        """Stop the build, or the worker's whole tree (SIGTERM, SIGKILL after `grace_s`)."""
        self._cancel.set()  # a build in progress stops its installer
        with self._lock:
            worker = self._worker
        if worker is not None:
            threading.Thread(target=worker.cancel, args=(grace_s,), daemon=True).start()
        else:  # building, or waiting for another run's build of the same venv
            self._finish_cancelled_soon()

    def _lifecycle(self) -> ExitStatus:
        try:
            env = self._environment()
        except InstallCancelled:
            return ExitStatus(EXIT_CANCELLED)
        except InstallFailed as exc:
            return self._install_failed(exc)
        except MllibError as exc:  # a bad requirement line, a bad mllib.toml
            return self._fail(getattr(exc, "failure_class", USER_ERROR), str(exc))
        except Exception as exc:  # a full disk, a bug: never hang the run
            return self._fail(SYSTEM_ERROR, f"the venv runtime failed: {exc!r}")
        try:
            with self._lock:
                if self._cancel.is_set():
                    return ExitStatus(EXIT_CANCELLED)
                self._worker = self._start_worker(env)
                self.pid, self.ident = self._worker.pid, self._worker.ident
            for chunk in self._worker.output():
                self._chunks.put(chunk)
            status = self._worker.wait()
            assert status is not None
            return status
        finally:
            env.release()

    def _environment(self) -> Env:
        folder = RunFolder(self.job.run_dir)
        plan = EnvPlan.read(folder.env_plan_file)
        config = Project.find(self.job.work_dir).config
        if plan is None:  # a run prepared without one: plan it here
            plan = plan_environment(self.job.work_dir, config, code_dir=self.job.code_dir)
        self._plan = plan
        cap = cap_bytes(config.runtime.env_cache_gb)
        return ensure_env(plan, progress=self._progress, cancel=self._cancel, cap_bytes=cap)

    def _start_worker(self, env: Env) -> ProcessHandle | WarmHandle:
        extra = {**env.variables(), "MLLIB_RUNTIME": "venv", "MLLIB_RUNTIME_ID": env.key}
        if env.meta.get("python_note"):
            extra["MLLIB_ENV_NOTE"] = str(env.meta["python_note"])
        fds = (env.lock.fileno(),) if env.lock is not None else ()
        runtime = ProcessRuntime(env.python, extra_env=extra, pass_fds=fds)
        return runtime.start(self.job)

    def _install_failed(self, exc: InstallFailed) -> ExitStatus:
        assert self._plan is not None  # failed installing it
        return self._fail(*classify_install_failure(exc, self._plan))

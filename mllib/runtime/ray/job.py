"""A run as a Ray job: submitted with the worker entrypoint, its log streamed, its end read.

With files the nodes share (`[ray] files`), the job's entrypoint is `cd PROJECT && exec python
-u -m mllib.worker ...` (the shell is Ray's: `exec` leaves the worker as the job's process, so
its exit code and a killing signal are the job's `driver_exit_code`). Shipped, it is
`python -u -m mllib.runtime.ray.node` in the job's working_dir (shipping.py, node.py), which
exits as its worker did. Variables that only steer the interpreter (PYTHONHASHSEED, thread
counts, MLLIB_RUN_ID) go in the job's runtime_env; the run's own variables (its env file, the
params' `env=`, data paths) go in a 0600 file of the run folder (or of the shipped package)
that the worker reads and removes at start (RunFolder.write_job_env), so the cluster's job table, which anyone holding
the cluster's token can list, never holds a secret.

Cancel: mllib's own SIGTERM to the worker first when it runs on this machine (a head on
loopback), then, after `grace_s`, Ray's stop_job (its SIGTERM, then SIGKILL after the head's
RAY_JOB_STOP_WAIT_TIME_S). A head that stops answering for `[ray] lost_after_s`, or that no
longer knows the job (restarted), has lost the run: a system error, retried by the run's
backend under `[retry]` (mllib.runs.cluster).

>>> handle = RayRuntime().start(job)  # doctest: +SKIP
>>> handle.ident
'mllib-20261207-0451-ab12-3f9c1e'
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shlex
import signal
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mllib.project import Project
from mllib.protocol.argv import WORKER_MODULE, worker_argv
from mllib.protocol.events import report_failure
from mllib.protocol.failure import EXIT_SYSTEM_ERROR, SYSTEM_ERROR, ExitStatus
from mllib.protocol.folder import RunFolder
from mllib.protocol.numeric_env import numeric_environment
from mllib.runtime.base import Job, host_python
from mllib.runtime.processes import find_process, kill_tree
from mllib.runtime.ray.client import RayUnavailable, connect, first_line, ray_missing
from mllib.runtime.ray.settings import RaySettings
from mllib.runtime.ray.shipping import Collector, shipped

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

NODE_MODULE = "mllib.runtime.ray.node"  # a shipped job's entrypoint (node.py)
RUN_METADATA = "mllib_run"  # the job's metadata key naming its run (reap finds jobs by it)
POLL_S = 0.1
PENDING_POLL_S = 0.5  # how often output() asks Ray whether a PENDING job has started
NOT_STARTED = "the job is submitted; Ray has not started it yet"
COLLECT_S = 30.0  # how long an ended shipped job's log may take to bring its outputs
HOLD_POLL_S = 2.0  # how often a held job looks at the cluster's pending jobs
LIMIT = " ([ray] max_pending): submitted once fewer are"
# Variables that stay in the job's runtime_env: they must be set before the interpreter starts
# (PYTHONHASHSEED) or say only which run this is; all of them are fine in Ray's job table.
INTERPRETER_VARIABLES = ("PYTHONHASHSEED", "MLLIB_RUN_ID")
PREAMBLE = "Running entrypoint for job "  # Ray's line naming the entrypoint it starts
# Ray's own log lines before the entrypoint runs (runtime_env set-up).
RAY_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\t[A-Z]+ \w+\.py:\d+ -- ")


class RayRuntime:
    """Runs the worker as a job on the Ray cluster of `[ray] address`."""

    name = "ray"

    def available(self) -> str | None:
        return ray_missing()

    def start(self, job: Job) -> RayJob:
        settings = RaySettings.from_config(Project.find(job.work_dir).config)
        client = connect(settings)
        folder = RunFolder(job.run_dir)
        data = {name: str(path) for name, path in job.data_mounts.items()}  # see Job.data_mounts
        variables = {**data, **job.env}
        numeric = numeric_environment()
        plain = {k: v for k, v in variables.items() if k in INTERPRETER_VARIABLES or k in numeric}
        own = {k: v for k, v in variables.items() if k not in plain}
        python = settings.python or host_python()
        submission_id = f"mllib-{job.run_id}-{secrets.token_hex(3)}"
        nonce = secrets.token_hex(8)  # the attempt's own: its package and its log's records

        def submit() -> None:
            try:
                with self._files(client, job, own, nonce, python, settings) as (entry, files):
                    client.submit_job(
                        entrypoint=entry,
                        submission_id=submission_id,
                        entrypoint_num_gpus=settings.num_gpus or None,
                        runtime_env={
                            **files,
                            "env_vars": {
                                **plain,
                                "PYTHONUNBUFFERED": "1",
                                "MLLIB_RUNTIME": "ray",
                                "MLLIB_RUNTIME_ID": settings.cluster,
                            },
                        },
                        metadata={RUN_METADATA: job.run_id},
                    )
            except RayUnavailable:
                folder.discard_secret_params()
                raise
            except Exception as exc:
                folder.discard_secret_params()
                raise RayUnavailable(
                    f"the Ray cluster at {settings.cluster} refused the job: {first_line(exc)}"
                ) from exc

        collector = Collector(folder, nonce, settings.max_output_bytes) if settings.ships else None
        handle = RayJob(client, submission_id, folder, settings, collector)
        if settings.max_pending:  # submitted by wait() once the cluster holds few enough
            handle.hold, handle.waiting = submit, f"counting the cluster's pending jobs{LIMIT}"
        else:
            submit()
            handle.submitted.set()
        return handle

    @staticmethod
    @contextlib.contextmanager
    def _files(
        client: JobSubmissionClient,
        job: Job,
        variables: dict[str, str],
        nonce: str,
        python: str,
        settings: RaySettings,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """The job's entrypoint and how its files reach it: shipped in its runtime_env
        (shipping.py), or read at this machine's paths (a filesystem the nodes share)."""
        if settings.ships:
            with shipped(client, job, variables, nonce, settings.max_output_bytes) as files:
                yield f"exec {shlex.join([python, '-u', '-m', NODE_MODULE])}", files
            return
        RunFolder(job.run_dir).write_job_env(variables)
        command = shlex.join(worker_argv(python, job.run_dir, job.code_dir))
        yield f"cd {shlex.quote(str(job.work_dir))} && exec {command}", {}

    def reap(self, run_id: str, grace_s: float = 5.0) -> int:
        """Stop every unfinished job of `run_id` on the cluster; returns how many. Used when the
        run's supervisor died: the project folder is the current directory's."""
        if ray_missing():
            return 0
        try:
            client = connect(RaySettings.from_config(Project.find(Path.cwd()).config))
        except Exception:
            return 0
        found = [
            job.submission_id
            for job in client.list_jobs()
            if (job.metadata or {}).get(RUN_METADATA) == run_id and not job.status.is_terminal()
        ]
        for submission_id in found:
            if submission_id:
                client.stop_job(submission_id)
        return len(found)


class Preamble:
    """Drops Ray's own lines from a job's log: its runtime_env set-up lines before the entrypoint
    starts, and "Running entrypoint for job ID: COMMAND" (which may come after the entrypoint's
    first lines: Ray writes it through a buffered file once the process has started)."""

    def __init__(self, submission_id: str) -> None:
        self.marker = f"{PREAMBLE}{submission_id}: "
        self.done = False
        self.partial = ""

    def filter(self, text: str) -> str:
        if self.done:
            return text
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()  # no newline yet: wait for the rest of the line
        kept = []
        for line in lines:
            if self.done:
                kept.append(line)
            elif line.startswith(self.marker):
                self.done = True
            elif not RAY_LOG_LINE.match(line):
                kept.append(line)
        out = "".join(f"{line}\n" for line in kept)
        if self.done and self.partial:
            out, self.partial = out + self.partial, ""
        return out

    def flush(self) -> str:
        rest, self.partial, self.done = self.partial, "", True
        return rest


class RayJob:
    """One run's job on the cluster: the handle the local backend follows (RunHandle)."""

    def __init__(
        self,
        client: JobSubmissionClient,
        submission_id: str,
        folder: RunFolder,
        settings: RaySettings,
        collector: Collector | None = None,
    ) -> None:
        self.client = client
        self.collector = collector  # a shipped job's records (None: it shares our files)
        self.collected = threading.Event()  # output() has read the whole log
        self.ident = submission_id
        self.folder = folder
        self.settings = settings
        self.pid: int | None = None  # the worker's pid, when it runs on this machine
        self.status: ExitStatus | None = None
        self.unreachable_since: float | None = None
        self.ended_at = 0.0
        # Why Ray has not started the job yet (its PENDING message); None once it runs or ends.
        self.waiting: str | None = NOT_STARTED
        self.looked_at = 0.0
        # The job's submission, held here while the cluster holds `[ray] max_pending` of
        # mllib's jobs PENDING (the queue stays mllib's: Ray would run them first come).
        self.hold: Callable[[], None] | None = None
        self.held_at = 0.0
        # Whether a run's PENDING job counts: the run's backend leaves out runs it knows ended
        # (Ray cannot stop a PENDING job: ray-project/ray#58353, so a cancelled run's stays).
        self.counts: Callable[[str], bool] = lambda run_id: True
        self.submitted = threading.Event()  # the job exists on the cluster: its log can be read
        # Held jobs are released by wait() or by output(), whichever runs (predict reads the
        # output first): one at a time, and never once cancel() has dropped the job.
        self.releasing = threading.Lock()

    # -- RunHandle -----------------------------------------------------------------------------
    def output(self) -> Iterator[bytes]:
        """The job's log as Ray streams it, without Ray's own lines about starting it (nor a
        shipped job's records, applied as they come); whatever the stream missed (it closed
        early, the head dropped it) is read from the whole log."""
        preamble = Preamble(self.ident)
        collector = self.collector

        def plain(text: str, *, end: bool = False) -> bytes:
            out = preamble.filter(text) + (preamble.flush() if end else "")
            if collector is not None:
                out = collector.feed(out) + (collector.flush() if end else "")
            return out.encode()

        received = 0
        try:
            # held (no job yet), then PENDING (no log yet: Ray's stream would wait for the job
            # to start, however long, even for a run cancelled meanwhile)
            looked = 0.0
            while True:
                ended = self.status is not None  # read first: wait() clears `waiting` before
                if self.submitted.is_set():
                    if self.waiting is None:
                        break
                    if time.monotonic() - looked > PENDING_POLL_S:  # wait() may not be running
                        looked = time.monotonic()
                        if self._left_pending():
                            break
                if ended:
                    return  # cancelled, or its submission failed, before the job started
                if self.hold is not None:
                    self._release()
                time.sleep(POLL_S)
            for text in self._stream():
                received += len(text)
                if out := plain(text):
                    yield out
            if collector is not None and collector.complete:
                # the node's last record came: nothing is missing, and a log that carried the
                # outputs (up to [ray] max_output_mb) is not read again whole
                if out := plain("", end=True):
                    yield out
                return
            while True:  # the stream has ended: the rest of the log, once the job has
                try:
                    ended = self.client.get_job_status(self.ident).is_terminal()
                    whole = self.client.get_job_logs(self.ident)
                except Exception:
                    return  # the head is gone: wait() tells what happened to the run
                rest, received = whole[received:], max(received, len(whole))
                if out := plain(rest, end=ended):
                    yield out
                if ended:
                    return
                time.sleep(0.5)
        finally:
            self.collected.set()

    def _stream(self) -> Iterator[str]:
        """Ray's log stream of the job (a websocket), driven on this thread's own event loop."""
        loop = asyncio.new_event_loop()
        stream = cast("AsyncGenerator[str, None]", self.client.tail_job_logs(self.ident))
        try:
            while True:
                try:
                    yield loop.run_until_complete(stream.__anext__())
                except StopAsyncIteration:
                    return
                except Exception:  # closed early: output() reads the rest
                    return
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(stream.aclose())
            loop.close()

    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        """The job's end; a shipped job's only once its outputs are read from its log (or
        COLLECT_S later: a log that never ends)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.hold is not None:
                self._release()
            elif self.status is None:
                self.status = self._read_status()
                self.ended_at = time.monotonic()
            if self.status is not None and (
                self.collector is None
                or self.collected.is_set()
                or time.monotonic() - self.ended_at > COLLECT_S
            ):
                return self.status
            if deadline is not None and time.monotonic() >= deadline:
                return None
            left = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            time.sleep(max(0.0, left))

    def cancel(self, grace_s: float) -> None:
        """mllib's SIGTERM first (a worker on this machine), Ray's stop_job after `grace_s`."""
        with self.releasing:
            if self.hold is not None:  # never submitted: nothing runs
                self.hold = None
                self.folder.discard_secret_params()
                self.status = ExitStatus(None, signal.SIGTERM)
                return
        pid = self.pid or (None if self.collector else self._local_worker(now_=True))
        if pid is not None and grace_s > 0:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self.wait(grace_s) is not None:
                return
        try:
            self.client.stop_job(self.ident)
        except Exception:  # the head is gone: wait() reports the run lost
            return
        # Ray cannot stop a PENDING job (ray-project/ray#58353): its stop_job is a call queued
        # for the job's supervisor actor, which has not started. Nothing of the run runs, so
        # the run ends now, and its supervisor with it (it would wait for Ray forever).
        with contextlib.suppress(Exception):
            if self.status is None and self.client.get_job_status(self.ident).value == "PENDING":
                self.status = ExitStatus(None, signal.SIGTERM)

    # -- its parts ----------------------------------------------------------------------------
    def _left_pending(self) -> bool:
        """Whether Ray has started the job (or cannot say: its log stream then tells)."""
        try:
            return bool(self.client.get_job_status(self.ident).value != "PENDING")
        except Exception:
            return True

    def pending_limit(self) -> str | None:
        """Why the job must wait before it is submitted (`[ray] max_pending` of mllib's jobs
        are PENDING on the cluster), or None."""
        limit = self.settings.max_pending
        if not limit:
            return None
        pending = sum(
            1
            for job in self.client.list_jobs()
            if job.status.value == "PENDING"
            and RUN_METADATA in (job.metadata or {})
            and self.counts(str((job.metadata or {})[RUN_METADATA]))
        )
        if pending < limit:
            return None
        return f"{pending} of mllib's jobs are pending on the cluster{LIMIT}"

    def _release(self) -> None:
        """Submit the held job once the cluster holds fewer pending jobs (looked at every
        HOLD_POLL_S); a submission that fails ends the run as a system error."""
        with self.releasing:
            if self.hold is not None:
                self._release_held()

    def _release_held(self) -> None:
        if self.held_at and time.monotonic() - self.held_at < HOLD_POLL_S:
            return
        self.held_at = time.monotonic()
        try:
            if held := self.pending_limit():
                self.waiting = held
                return
        except Exception:
            return  # the head did not answer: looked at again later
        submit, self.hold = self.hold, None
        self.waiting = NOT_STARTED
        try:
            if submit is not None:
                submit()
        except RayUnavailable as exc:
            self.status = self._lost(f"the ray runtime could not start: {exc}")
            return
        self.submitted.set()

    def _read_status(self) -> ExitStatus | None:
        """How the job ended, or None while it runs; a lost job ends as a system error."""
        try:
            info = self.client.get_job_info(self.ident)
        except Exception as exc:
            return self._unreachable(exc)
        self.unreachable_since = None
        pending = info.status.value == "PENDING"
        self.waiting = first_line(Exception(info.message or NOT_STARTED)) if pending else None
        if not info.status.is_terminal():
            if self.pid is None and self.collector is None and info.status.value == "RUNNING":
                self.pid = self._local_worker()
            return None
        code = info.driver_exit_code
        if info.status.value == "SUCCEEDED":
            return ExitStatus(0)
        if code is not None:
            return ExitStatus(code) if code >= 0 else ExitStatus(None, -code)
        if info.status.value == "STOPPED":  # stopped before its entrypoint ran
            return ExitStatus(None, signal.SIGTERM)
        message = first_line(Exception(info.message or "no message"))
        return self._lost(f"the Ray job {self.ident} was lost: {message}")

    def _unreachable(self, exc: Exception) -> ExitStatus | None:
        """The head did not answer (or forgot the job): lost once that has lasted lost_after_s."""
        forgotten = "does not exist" in str(exc) or "404" in str(exc)
        now = time.monotonic()
        if self.unreachable_since is None:
            self.unreachable_since = now
        if not forgotten and now - self.unreachable_since < self.settings.lost_after_s:
            return None
        why = (
            "no longer knows it"
            if forgotten
            else f"did not answer for {now - self.unreachable_since:.0f} s"
        )
        return self._lost(
            f"the Ray job {self.ident} was lost: the head at {self.settings.cluster} {why} "
            f"({first_line(exc)})"
        )

    def _lost(self, message: str) -> ExitStatus:
        """A system error; a worker of the lost job still running here is ended first, so it
        never writes into the run folder beside the attempt that replaces it."""
        pid = self.pid or (None if self.collector else self._local_worker(now_=True))
        if pid is not None:
            kill_tree(pid, 0)
        report_failure(self.folder.events_file, SYSTEM_ERROR, message)
        return ExitStatus(EXIT_SYSTEM_ERROR, detail=message)

    def _local_worker(self, *, now_: bool = False) -> int | None:
        """The worker's pid when it runs on this machine (its command names the run folder);
        looked for at most once a second unless `now_`."""
        now = time.monotonic()
        if not now_ and now - self.looked_at < 1.0:
            return None
        self.looked_at = now
        return find_process(WORKER_MODULE, "--run-dir", str(self.folder.path))

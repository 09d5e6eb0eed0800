"""Warm workers: the process runtime's workers forked from a parent that has imported them once.

A process-runtime run pays for starting Python and importing the worker (mllib's core,
cloudpickle, orjson) and the model's libraries (numpy, scikit-learn) before its own code runs:
~150 ms of CPU for a trivial model, most of a short trial. A study runs many such trials with
the same interpreter, project and environment, so while one is driven (`warm_workers()`), the
process runtime starts its workers from a fork server (mllib.worker.forkserver, its messages in
mllib.protocol.forks): a process started once, as the worker would be (same interpreter, working
folder and environment), that imports the worker and the model file's module-level imports of
installed libraries (never the project's own code), then forks one child per run, as
multiprocessing's forkserver does with `preload`.

Each child is still the run's own process, exactly as `python -u -m mllib.worker` would be: its
own session (cancel is SIGTERM to its process group), its stdout and stderr on the supervisor's
pipe, its environment and working folder set before the worker's `main()` runs, its exit status
reported by the fork server (which alone may reap it) over a socket of its own. The supervisor
records, streams and stops it as any worker (mllib.runs.local).

Only where it is the same process: the process runtime with this interpreter and no passed file
descriptors (not the venv runtime), on Linux, and a run whose environment is the one the fork
server started with, apart from the run's id and tags. Anything else, or a fork server that could
not start, runs the worker as before (`subprocess`). `MLLIB_WARM_WORKERS=0` turns it off.

>>> with warm_workers(model_imports(Path("model.py"))):  # doctest: +SKIP
...     handle = ProcessRuntime().start(job)  # forked when it can be, else started as before
"""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mllib.protocol.failure import ExitStatus
from mllib.protocol.forks import SERVER_MODULE, receive, send
from mllib.runtime.processes import is_alive, kill_tree

PER_RUN = ("MLLIB_RUN_ID", "MLLIB_RUN_TAGS")  # what may differ between runs of one fork server
START_TIMEOUT_S = 60.0

_active: WarmWorkers | None = None
_active_lock = threading.Lock()


@contextmanager
def warm_workers(preload: list[str] | None = None) -> Iterator[WarmWorkers | None]:
    """While held, the process runtime forks its workers from one fork server (started with
    the first run, ended here); yields None where warm workers are off or not possible here."""
    global _active
    if os.environ.get("MLLIB_WARM_WORKERS", "1").lower() in ("0", "false", "no"):
        yield None
        return
    if not sys.platform.startswith("linux") or _active is not None:
        yield None  # fork is Linux's here; a nested study uses the outer one's, or none
        return
    pool = WarmWorkers(list(preload or ()))
    with _active_lock:
        _active = pool
    try:
        yield pool
    finally:
        with _active_lock:
            _active = None
        pool.close()


def active() -> WarmWorkers | None:
    """The warm workers of the study driven now, if any (mllib.runtime.process asks)."""
    return _active


def model_imports(model_file: Path) -> list[str]:
    """The modules a model file imports at module level (absolute imports, in order): what the
    fork server imports once, where they are installed libraries rather than the project's."""
    try:
        tree = ast.parse(model_file.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return []
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return list(dict.fromkeys(names))


class WarmWorkers:
    """One fork server, started with the first run that may use it (see the module docstring)."""

    def __init__(self, preload: list[str]) -> None:
        self.preload = preload
        self.forked = 0  # runs started from the fork server
        self._lock = threading.Lock()
        self._control: socket.socket | None = None
        self._server: subprocess.Popen[bytes] | None = None
        self._key: tuple[str, str, tuple[tuple[str, str], ...]] | None = None
        self._broken = False

    def start(
        self, python: str, args: list[str], cwd: Path, env: dict[str, str]
    ) -> WarmHandle | None:
        """The worker `python -u -m mllib.worker ARGS`, forked; None when it cannot be (the
        caller starts it as before)."""
        key = (python, str(cwd), _startup_env(env))
        with self._lock:
            if self._broken or (self._key is not None and key != self._key):
                return None
            if self._control is None:
                self._key = key
                if not self._start_server(python, cwd, env):
                    return None
            control = self._control
            assert control is not None
            out_r, out_w = os.pipe()
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            request = {"args": args, "cwd": str(cwd), "env": env}
            try:
                send(control, request, [out_w, theirs.fileno()])
            except OSError:
                self._broken = True
                for fd in (out_r, out_w):
                    os.close(fd)
                mine.close()
                return None
            finally:
                theirs.close()
            os.close(out_w)
        answer = receive(mine, START_TIMEOUT_S)
        if not answer or "pid" not in answer:
            os.close(out_r)
            mine.close()
            self._broken = True
            return None
        self.forked += 1
        return WarmHandle(int(answer["pid"]), mine, out_r)

    def close(self) -> None:
        """End the fork server (runs it started go on to their end, as workers do)."""
        with self._lock:
            if self._control is not None:
                self._control.close()
                self._control = None
            if self._server is not None:
                try:
                    self._server.wait(5)
                except subprocess.TimeoutExpired:
                    self._server.kill()
                    self._server.wait()
                self._server = None

    def _start_server(self, python: str, cwd: Path, env: dict[str, str]) -> bool:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._server = subprocess.Popen(
                [python, "-u", "-m", SERVER_MODULE, str(theirs.fileno()), *self.preload],
                cwd=cwd,
                env={k: v for k, v in env.items() if k not in PER_RUN},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the driver, which ends the study
                pass_fds=(theirs.fileno(),),
            )
        except OSError:
            mine.close()
            self._broken = True
            return False
        finally:
            theirs.close()
        if receive(mine, START_TIMEOUT_S) != {"ready": True}:
            mine.close()
            self._server.kill()
            self._server.wait()
            self._server = None
            self._broken = True
            return False
        self._control = mine
        return True


class WarmHandle:
    """A forked worker (the process runtime's RunHandle): its output pipe, and its exit status
    as the fork server reports it."""

    def __init__(self, pid: int, reply: socket.socket, out_fd: int) -> None:
        self.pid = pid
        self.ident = str(pid)
        self._reply = reply
        self._out = os.fdopen(out_fd, "rb", buffering=0)
        self._status: ExitStatus | None = None
        self._lock = threading.Lock()

    def output(self) -> Iterator[bytes]:
        try:
            while chunk := self._out.read(65536):
                yield chunk
        finally:
            self._out.close()

    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._status is None:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                answer = receive(self._reply, left)
                if answer is None:  # still running after `timeout`
                    return None
                if "code" in answer:
                    code = int(answer["code"])
                    self._status = ExitStatus(code) if code >= 0 else ExitStatus(None, -code)
                elif not is_alive(self.pid):  # the fork server is gone, and so is the worker
                    self._status = ExitStatus(None, detail="its fork server ended before it")
                elif left is not None and left <= 0:
                    return None
                else:  # the fork server is gone: watch the worker itself
                    time.sleep(min(0.1, left) if left is not None else 0.1)
            if self._reply.fileno() >= 0:
                self._reply.close()
            return self._status

    def cancel(self, grace_s: float) -> None:
        kill_tree(self.pid, grace_s, root_done=lambda: self.wait(0) is not None)


def _startup_env(env: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """What a process takes from its environment when it starts (PYTHONHASHSEED, the thread
    counts libraries read when imported): runs agree on it, or they are not forked alike."""
    return tuple(sorted((k, v) for k, v in env.items() if k not in PER_RUN))

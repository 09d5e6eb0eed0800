"""The fork server of warm workers (mllib.runtime.forkserver starts it, one per study): a Python
that imports the worker and the model's libraries once, then forks one worker a run.

`python -m mllib.worker.forkserver FD [MODULE...]`: FD is its control socket (a SEQPACKET
socketpair end, mllib.protocol.forks); it imports the worker's modules and each MODULE (not the
project's own code: one found in the working folder rather than in the environment), says it is
ready, then for each request forks a child that becomes the run's worker exactly as `python -u -m
mllib.worker ARGS` would be (its own session, stdin from /dev/null, stdout and stderr on the
pipe it was given, the run's working folder and environment), and reports the child's pid and
exit status on the socket that came with the request. It reaps its children on SIGCHLD, with
one thread, as multiprocessing's forkserver does (forking a process with threads is unsafe). It
ends when the control socket closes (the driver is done or died); workers still running go on.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import os
import select
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from mllib.protocol.forks import receive_request, send

WORKER_PRELOAD = ("mllib.worker.main", "mllib.worker.environment", "mllib.discovery")
# What a run imports later, on its way (its command line, saving the model): measured in a run
# of a trivial model, ~10 ms of CPU each run no longer spends.
WORKER_LATER = ("argparse", "logging", "pickle", "cloudpickle", "mllib.persistence", "mllib.ranges")


def serve(fd: int, preload: list[str]) -> None:
    """Import `preload`, then fork a worker for each request on the control socket `fd` until it
    closes; report each child's exit status on the socket that came with its request."""
    _preload(preload)
    control = socket.socket(fileno=fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    replies: dict[int, socket.socket] = {}
    send(control, {"ready": True})
    while True:
        ready, _, _ = select.select([control.fileno(), wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
            _reap(replies)
        if control.fileno() not in ready:
            continue
        received = receive_request(control)
        if received is None:  # the driver is gone: its runs go on, their statuses are its loss
            break
        request, (out_fd, reply_fd) = received
        pid = os.fork()
        if pid == 0:
            for sock in (control, *replies.values()):
                sock.close()
            for own in (wake_r, wake_w, reply_fd):
                os.close(own)
            _child(request, out_fd)
        os.close(out_fd)
        reply = socket.socket(fileno=reply_fd)
        send(reply, {"pid": pid})
        replies[pid] = reply


def _preload(names: list[str]) -> None:
    """Import each module, unless it is the project's own code (found in the working folder,
    not in the environment's) or fails to import (its run then says why, as it would have)."""
    for name in WORKER_PRELOAD:
        importlib.import_module(name)
    for name in WORKER_LATER:
        try:
            importlib.import_module(name)
        except ImportError:  # the run imports it when it needs it, and says what is missing
            continue
    here = os.getcwd() + os.sep
    envs = tuple(p + os.sep for p in {sys.prefix, sys.base_prefix})
    for name in names:
        try:
            spec = importlib.util.find_spec(name.split(".")[0])
            origin = (spec.origin or "") if spec is not None else ""
            if spec is None or (origin.startswith(here) and not origin.startswith(envs)):
                continue
            importlib.import_module(name)
        except BaseException:  # whatever a library's import does, the run sees
            continue


def _reap(replies: dict[int, socket.socket]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        reply = replies.pop(pid, None)
        if reply is not None:
            try:
                send(reply, {"code": os.waitstatus_to_exitcode(status)})
            except OSError:
                pass  # its supervisor is gone
            reply.close()


def _child(request: dict[str, Any], out_fd: int) -> None:
    """In the forked child: become the run's worker process, run it, and exit with its code."""
    code = 3
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(out_fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        from mllib.worker import main as worker  # imported already: preloaded

        sys.argv = [str(Path(worker.__file__).with_name("__main__.py")), *request["args"]]
        code = worker.main(list(request["args"]))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # printed to the run's log, a system error
        import traceback

        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2:])

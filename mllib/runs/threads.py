"""Daemon threads kept for reuse: what a supervising process hands off per run (the output pump
of each run, the trials of a tuning study) runs on a thread that is already started.

Starting a thread costs its starter a wait until the new thread runs (~0.2 ms on an idle
machine, milliseconds on a loaded one); a study's trial and its run's pump paid it twice a
trial. An idle thread waits `IDLE_S` for more work, then ends. A child forked from this process
gets none of them (threads do not survive fork), so it starts its own.

>>> task = spawn(print, "hello", name="greeter")  # doctest: +SKIP
>>> task.join(timeout=1.0)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

IDLE_S = 30.0  # an idle thread ends after this long without work

Work = tuple["Task", Callable[..., Any], tuple[Any, ...], str]
_lock = threading.Lock()
_idle: list[queue.SimpleQueue[Work]] = []  # each idle thread's inbox


class Task:
    """One function running on a pooled thread, as a Thread is waited for: `join`, `is_alive`."""

    def __init__(self) -> None:
        self._done = threading.Event()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the function has returned (or raised), at most `timeout` seconds."""
        self._done.wait(timeout)

    def is_alive(self) -> bool:
        return not self._done.is_set()


def spawn(fn: Callable[..., Any], *args: Any, name: str = "mllib-task") -> Task:
    """Run `fn(*args)` on an idle daemon thread of this process (a new one when none is idle),
    named `name` while it runs. An exception it raises is reported as a thread's would be
    (threading.excepthook) and ends only that call."""
    task = Task()
    with _lock:
        inbox = _idle.pop() if _idle else None
    if inbox is None:
        inbox = queue.SimpleQueue()
        threading.Thread(target=_serve, args=(inbox,), name=name, daemon=True).start()
    inbox.put((task, fn, args, name))
    return task


def _serve(inbox: queue.SimpleQueue[Work]) -> None:
    """A pooled thread: run what arrives in its inbox until it has been idle IDLE_S."""
    me = threading.current_thread()
    while True:
        try:
            task, fn, args, name = inbox.get(timeout=IDLE_S)
        except queue.Empty:
            with _lock:
                if inbox in _idle:  # nobody took it meanwhile: end
                    _idle.remove(inbox)
                    return
            continue  # taken just now: its work is on the way
        me.name = name
        try:
            fn(*args)
        except BaseException:
            exc_type, exc, tb = sys.exc_info()
            assert exc_type is not None
            threading.excepthook(threading.ExceptHookArgs((exc_type, exc, tb, me)))  # type: ignore[arg-type]
            del exc, tb
        finally:
            with _lock:  # idle before done: whoever waited for it may hand it more at once
                _idle.append(inbox)
            task._done.set()


def _forget_after_fork() -> None:
    """A forked child has none of its parent's threads: their inboxes would never be read."""
    global _lock
    _lock = threading.Lock()
    _idle.clear()


os.register_at_fork(after_in_child=_forget_after_fork)

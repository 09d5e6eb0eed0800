"""The pooled threads a supervising process hands per-run work to (mllib.runs.threads): work
runs on a thread already started, an exception ends only its call, and a forked child starts
its own threads."""

from __future__ import annotations

import os
import threading

from mllib.runs import threads


def test_work_runs_on_a_reused_daemon_thread_named_for_it() -> None:
    seen: list[tuple[int, str, bool]] = []

    def note() -> None:
        me = threading.current_thread()
        seen.append((threading.get_ident(), me.name, me.daemon))

    first = threads.spawn(note, name="pump-a")
    first.join(timeout=10)
    assert not first.is_alive()
    second = threads.spawn(note, name="trial-1")
    second.join(timeout=10)
    assert [s[1:] for s in seen] == [("pump-a", True), ("trial-1", True)]
    assert seen[0][0] == seen[1][0]  # the second ran on the thread the first left idle


def test_an_exception_is_reported_and_the_thread_serves_again(monkeypatch) -> None:
    reported: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: reported.append(args.exc_value))

    def fail() -> None:
        raise RuntimeError("disk full")

    threads.spawn(fail, name="pump-b").join(timeout=10)
    assert [str(e) for e in reported] == ["disk full"]
    done = threading.Event()
    threads.spawn(done.set).join(timeout=10)
    assert done.is_set()


def test_a_forked_child_starts_its_own_threads() -> None:
    threads.spawn(lambda: None).join(timeout=10)  # the parent now holds an idle thread
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its work must run although the parent's threads are not here
        ran = threading.Event()
        threads.spawn(ran.set).join(timeout=10)
        os.write(write, b"1" if ran.is_set() else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"

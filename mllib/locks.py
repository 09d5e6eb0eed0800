"""File locks between processes: the one way mllib takes an flock.

Every lock file is opened with O_NOFOLLOW (a symlink planted at its path is refused, not
followed), created 0600 when absent and never chmod-ed (a file mllib did not create keeps its
mode). A wait is bounded: past its timeout it fails with a message naming the process that holds
the lock. An exclusive holder writes its pid into the file (unless the file holds data of its
own, `record_pid=False`), so `holder()` can name it where /proc/locks cannot be read.

>>> with file_lock(Path(".mllib/agents.lock"), what="the agents list"):  # doctest: +SKIP
...     ...  # change agents.json
>>> with try_lock(run_dir / "supervisor.lock") as held:  # doctest: +SKIP
...     if not held: ...  # another process follows this run
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from mllib.errors import EXIT_SYSTEM, MllibError

DEFAULT_TIMEOUT_S = 60.0
_POLL_FIRST_S = 0.005
_POLL_MAX_S = 0.25


class LockTimeout(MllibError):
    """A lock was still held by another process when the wait for it ran out."""

    exit_code = EXIT_SYSTEM


class LockFileError(MllibError):
    """A lock file that mllib will not use: a symlink, or not a regular file."""

    exit_code = EXIT_SYSTEM


class FileLock:
    """An flock on `path`, exclusive or shared; `acquire` waits at most `timeout` seconds."""

    def __init__(
        self,
        path: Path,
        *,
        shared: bool = False,
        what: str | None = None,
        record_pid: bool = True,
    ) -> None:
        self.path = Path(path)
        self.shared = shared
        self.what = what or str(self.path)
        self.record_pid = record_pid  # exclusive holds only
        self._fd: int | None = None

    def acquire(
        self, timeout: float | None = DEFAULT_TIMEOUT_S, *, shared: bool | None = None
    ) -> bool:
        """Take the lock; False when another process still held it after `timeout` seconds
        (0: try once). None waits as long as it takes, for callers that report their waiting.
        `shared` overrides the kind given at creation; on a lock already held it converts it
        (as flock does: not atomically, the lock may pass to another process in between)."""
        if shared is not None:
            self.shared = shared
        held = self._fd is not None
        fd = self._fd if self._fd is not None else _open(self.path)
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _POLL_FIRST_S
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    if not held:
                        os.close(fd)
                    return False
                time.sleep(pause if deadline is None else min(pause, deadline - time.monotonic()))
                pause = min(pause * 2, _POLL_MAX_S)
            except BaseException:
                if not held:
                    os.close(fd)
                raise
        self._fd = fd
        if self.record_pid and not self.shared:
            _write_pid(fd, os.getpid())
        return True

    def fileno(self) -> int:
        """The lock file's descriptor while held (a child process given it holds the lock too)."""
        if self._fd is None:
            raise ValueError(f"the lock on {self.path} is not held")
        return self._fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self.record_pid and not self.shared:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)  # while still held: the next holder writes its own pid
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Let go of the lock by closing its file only: it ends once no child process given the
        descriptor (`fileno`) still holds it."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def holder(self) -> int | None:
        """The pid of a process holding this lock (None when none is known)."""
        return holder(self.path)

    def timeout_error(self, timeout: float) -> LockTimeout:
        pid = self.holder()
        who = f"process {pid}" if pid else "another process"
        return LockTimeout(
            f"Timed out after {timeout:g} s waiting for {self.what}: {who} holds its lock "
            f"({self.path})",
            hint=f"Wait for {who} to finish, or stop it, then run the command again.",
        )


@contextlib.contextmanager
def file_lock(
    path: Path,
    *,
    shared: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
    what: str | None = None,
) -> Iterator[FileLock]:
    """Hold the lock on `path` for the block, waiting at most `timeout` seconds for it (then
    LockTimeout names the holder's pid)."""
    lock = FileLock(path, shared=shared, what=what)
    if not lock.acquire(timeout):
        raise lock.timeout_error(timeout)
    try:
        yield lock
    finally:
        lock.release()


@contextlib.contextmanager
def try_lock(path: Path, *, shared: bool = False, timeout: float = 0.0) -> Iterator[bool]:
    """Hold the lock on `path` for the block if no other process holds it (True); else False at
    once (or after `timeout` seconds), for callers that do something else when another process
    is at work."""
    lock = FileLock(path, shared=shared)
    held = lock.acquire(timeout)
    try:
        yield held
    finally:
        if held:
            lock.release()


def holder(path: Path) -> int | None:
    """The pid of a process holding an flock on `path`: from /proc/locks where the system has
    it (Linux; any kind of holder), else the pid an exclusive holder wrote into the file. None
    when none is known."""
    try:
        info = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    try:
        return _proc_locks_holder(info)
    except OSError:
        pass
    try:
        with open(path, "rb") as handle:
            text = handle.read(32).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def user_lock_dir() -> Path:
    """Where this user's host-wide locks live (the user's state folder, 0700): per-user state
    stays in per-user places, never a world-writable folder such as /run/lock."""
    from mllib.filemodes import private_dir
    from mllib.userdirs import state_dir

    return private_dir(state_dir() / "locks")


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LockFileError(
                f"The lock file {path} is a symbolic link; mllib does not follow links to lock",
                hint="Remove the link (and find out who planted it), then run the command again.",
            ) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LockFileError(
            f"The lock file {path} is not a regular file",
            hint="Remove it, then run the command again.",
        )
    return fd


def _write_pid(fd: int, pid: int) -> None:
    with contextlib.suppress(OSError):  # a read-only lock file still locks; it names no holder
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(pid).encode(), 0)


def _proc_locks_holder(info: os.stat_result) -> int | None:
    """The pid /proc/locks gives for an flock on this file (device and inode), if any; OSError
    where there is no /proc/locks."""
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    with open("/proc/locks", encoding="ascii", errors="replace") as handle:
        lines = handle.read().splitlines()
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            with contextlib.suppress(ValueError):
                return int(fields[4])
    return None

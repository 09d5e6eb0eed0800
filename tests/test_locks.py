"""Locks between processes (mllib.locks): no symlink followed, no mode changed, per-user places,
bounded waits that name the holder; and every flock of mllib goes through them."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mllib.errors import UsageError
from mllib.locks import LockFileError, LockTimeout, file_lock, holder, try_lock
from mllib.runtime.image_build import host_lock
from tests.conftest import ROOT, wait_for


def hold_lock(path: Path, *, shared: bool = False, record_pid: bool = True) -> subprocess.Popen:
    """Another process holding the lock on `path` until killed (prints 'held' once it does)."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from mllib.locks import FileLock
        lock = FileLock(Path({str(path)!r}), shared={shared}, record_pid={record_pid})
        assert lock.acquire(5)
        print("held", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "held":
        stop(proc)
        raise AssertionError("the holding process could not take the lock")
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def test_a_symlink_planted_at_a_lock_path_is_refused_and_its_target_keeps_its_mode(tmp_path):
    # The image-build lock used to open /run/lock/NAME.lock through a symlink and chmod the
    # target 0666. Now the lock lives in the user's own state folder and is never followed.
    target = tmp_path / "precious"
    target.write_text("secret\n")
    target.chmod(0o600)
    locks = Path(os.environ["MLLIB_HOME"]) / "state" / "locks"
    locks.mkdir(parents=True)
    (locks / "mllib-image-abc.lock").symlink_to(target)
    with pytest.raises(LockFileError, match="is a symbolic link"), host_lock("mllib-image-abc"):
        pass
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_text() == "secret\n"


def test_host_locks_live_in_a_private_per_user_folder(tmp_path):
    with host_lock("mllib-image-def"):
        folder = Path(os.environ["MLLIB_HOME"]) / "state" / "locks"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / "mllib-image-def.lock").stat().st_mode) == 0o600
    assert not Path("/run/lock/mllib-image-def.lock").exists()


def test_an_existing_lock_file_keeps_the_mode_it_had(tmp_path):
    path = tmp_path / "shared.lock"
    path.write_text("")
    path.chmod(0o664)
    with file_lock(path):
        pass
    with try_lock(path, shared=True) as held:
        assert held
    assert stat.S_IMODE(path.stat().st_mode) == 0o664


def test_a_wait_that_runs_out_names_the_holders_pid(tmp_path):
    path = tmp_path / "busy.lock"
    proc = hold_lock(path)
    try:
        with (
            pytest.raises(LockTimeout, match=rf"process {proc.pid} holds its lock") as caught,
            file_lock(path, timeout=0.3, what="the agents list"),
        ):
            pass
        assert "Timed out after 0.3 s waiting for the agents list" in caught.value.message
        assert holder(path) == proc.pid
    finally:
        stop(proc)
    with file_lock(path, timeout=5):  # a killed holder's lock is free at once
        pass


def test_shared_holders_are_named_too(tmp_path):
    path = tmp_path / "gc.lock"
    proc = hold_lock(path, shared=True)
    try:
        with try_lock(path, shared=True) as held:
            assert held  # shared locks go together
        with try_lock(path) as held:
            assert not held
        assert holder(path) == proc.pid
    finally:
        stop(proc)


def test_a_deploy_command_blocked_by_another_names_its_process(project):
    """As a user sees it: `mllib deploy stop` while another process holds the environment."""
    path = project.root / ".mllib" / "serving" / "locks" / "staging.lock"
    proc = hold_lock(path)
    try:
        result = project.mllib("deploy", "stop", "--env", "staging")
    finally:
        stop(proc)
    assert result.returncode == 1
    assert f"Another deploy, rollback or stop of staging is in progress (pid {proc.pid})" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_two_uploads_of_the_same_source_name_the_one_running(project):
    data = project.write("data.csv", "a,b\n1,2\n")
    from mllib.datasets.chunkstore import dataset_store
    from mllib.datasets.journal import UPLOADS_DIR, UploadJournal

    store = dataset_store(project.root / ".mllib" / "store")
    journal_dir = store.root / UPLOADS_DIR
    journal = UploadJournal.open(journal_dir, "d", str(data.resolve()), {"source": "x"})
    path = journal.path
    journal.close()
    proc = hold_lock(path, record_pid=False)  # the journal's lines are its content
    try:
        with pytest.raises(UsageError, match=rf"running \(process {proc.pid}\)"):
            UploadJournal.open(journal_dir, "d", str(data.resolve()), {"source": "x"})
    finally:
        stop(proc)
    wait_for(lambda: holder(path) is None, what="the lock to be released")


def test_every_flock_goes_through_mllib_locks():
    """One lock helper: a hand-made flock elsewhere would miss O_NOFOLLOW and the timeout.
    (The agent's bootstrap runs before mllib is installed and follows the same rules by hand.)"""
    allowed = {ROOT / "mllib" / "locks.py", ROOT / "agents" / "mllib_agent" / "bootstrap.py"}
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("mllib", "agents")
        for path in (ROOT / folder).rglob("*.py")
        if "fcntl.flock(" in path.read_text() and path not in allowed
    ]
    assert offenders == []


def test_a_venv_lock_converts_between_build_and_use_and_follows_no_symlink(tmp_path):
    """The venv cache's lock (mllib.runtime.venvs): held alone while a venv is built, shared
    while runs use it (a removal then leaves the venv), and never through a planted symlink."""
    from mllib.locks import FileLock
    from mllib.runtime.venvs import remove

    root = tmp_path / "envs"
    (root / "a").mkdir(parents=True)
    lock = FileLock(root / "a.lock", record_pid=False)
    user = FileLock(root / "a.lock", shared=True)  # another run (flock: per open file)
    assert lock.acquire(0)  # building
    assert not user.acquire(0)
    assert lock.acquire(0, shared=True)  # built: now shared with the runs that use it
    assert user.acquire(0)
    lock.release()
    assert not remove(root, "a") and (root / "a").is_dir()  # a run still holds it
    user.release()
    assert remove(root, "a") and not (root / "a").exists()

    target = tmp_path / "precious"
    target.write_text("x")
    target.chmod(0o600)
    (root / "c").mkdir()
    (root / "c.lock").symlink_to(target)
    with pytest.raises(LockFileError, match="is a symbolic link"):
        remove(root, "c")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and (root / "c").is_dir()

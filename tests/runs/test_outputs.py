"""A run whose outputs cannot be stored ends as a system error that says why, never `running`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import Project

# Run the command in its own mount namespace with the project's store bind-mounted read-only: a
# real store that refuses writes, like a full or remounted disk, for this process tree only.
READ_ONLY_STORE = (
    'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && shift && exec "$@"'
)


def _unshare_unavailable(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(f"{reason} (with CI=true this fails instead of skipping)")


def _train_with_read_only_store(project: Project, *args: str) -> subprocess.CompletedProcess:
    store = project.root / ".mllib" / "store"
    command = ["unshare", "-m", "--propagation", "private", "sh", "-c", READ_ONLY_STORE, "sh"]
    proc = subprocess.run(
        [*command, str(store), sys.executable, "-m", "mllib", "train", "model.py", *args],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "mount:" in proc.stderr or "unshare:" in proc.stderr:
        _unshare_unavailable(f"a read-only bind mount needs root and unshare: {proc.stderr}")
    return proc


def test_a_run_whose_outputs_cannot_be_stored_is_a_system_error_saying_why(
    model_project: Project,
):
    model_project.write(".mllibignore", "summary.txt\n")  # the model writes it beside model.py
    assert (
        model_project.mllib("train", "model.py", "--runtime=process").returncode == 0
    )  # the code is in the store

    result = _train_with_read_only_store(
        model_project, "--epochs=4", "--runtime=process"
    )  # new artifact contents

    assert result.returncode == 3, result.stdout + result.stderr
    assert "outputs could not be stored" in result.stderr
    assert "Read-only file system" in result.stderr
    run = model_project.last_run()  # listing runs settles dead supervisors: not this one
    assert (run["status"], run["failure_class"]) == ("failed", "system_error")
    assert "Read-only file system" in run["error"] and "ended unexpectedly" not in run["error"]
    assert run["model_version"] is None  # recorded succeeded only when whole
    run_dir = model_project.root / ".mllib" / "runs" / run["id"]
    assert str(run_dir) in run["error"]
    assert (run_dir / "artifacts" / "notes.json").read_text() == '{"epochs": 4}'

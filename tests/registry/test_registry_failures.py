"""A registry that fails: damaged, emptied, deleted, locked past the busy timeout, on a full disk.

Each is one clear line naming the file and what to do (exit 3, a system error), with nothing
half-written and never a new registry started over existing runs; `mllib doctor` checks,
backs up, restores and rebuilds it from the run folders.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import Mounts, Project

PROCESS = '[runtime]\nlocal = "process"\n'


@pytest.fixture
def trained(model_project: Project) -> Project:
    """A project with two recorded runs (one evaluated), trained in the process runtime."""
    model_project.write("mllib.toml", PROCESS)
    for args in (("--evaluate",), ("--epochs=5",)):
        result = model_project.mllib("train", "model.py", *args)
        assert result.returncode == 0, result.output
    return model_project


def registry(project: Project):
    return project.root / ".mllib" / "registry.db"


def one_line_error(result, *phrases: str) -> None:
    assert result.returncode == 3, result.output
    assert "Traceback" not in result.output
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def runs_of(project: Project) -> dict[str, dict]:
    listed = project.mllib("runs", "list", "--json")
    assert listed.returncode == 0, listed.output
    return {r["id"]: r for r in listed.json()}


def test_a_damaged_registry_is_one_line_naming_it_and_stays_as_it_was(trained: Project):
    path = registry(trained)
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    path.write_bytes(b"\x00garbage" * 512)
    for args in (("runs", "list"), ("train", "model.py"), ("data", "list"), ("keys", "list")):
        result = trained.mllib(*args)
        one_line_error(result, f"The registry {path} is damaged", "mllib doctor")
    assert path.read_bytes() == b"\x00garbage" * 512


def test_a_registry_with_damaged_pages_is_one_line_too(trained: Project):
    path = registry(trained)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = 4096
    data[page * 2 : page * 6] = b"\xff" * (page * 4)  # the header stays, tables do not
    path.write_bytes(bytes(data))
    result = trained.mllib("runs", "list")
    one_line_error(result, f"The registry {path} is damaged", "mllib doctor")


@pytest.mark.parametrize("how", ["truncated", "deleted"])
def test_an_emptied_registry_beside_run_folders_is_never_started_over(trained: Project, how):
    path = registry(trained)
    before = runs_of(trained)
    shown_before = {run_id: trained.show(run_id) for run_id in before}
    first = min(before, key=lambda run_id: before[run_id]["created_at"])
    model, version = before[first]["model"], shown_before[first]["model_version"]
    aliased = trained.mllib("models", "alias", f"{model}:{version}", "champion")
    assert aliased.returncode == 0, aliased.output
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    if how == "truncated":
        path.write_bytes(b"")
    state = "empty (0 bytes)" if how == "truncated" else "missing"
    for args in (("runs", "list"), ("train", "model.py")):
        result = trained.mllib(*args)
        one_line_error(result, f"The registry {path} is {state} but 2 run folder(s)")
        assert "mllib doctor --repair" in result.stderr
    assert (path.stat().st_size == 0) if how == "truncated" else not path.exists()

    checked = trained.mllib("doctor")
    assert checked.returncode == 1 and "mllib doctor --repair" in checked.stderr
    repaired = trained.mllib("doctor", "--repair")
    assert repaired.returncode == 0, repaired.output
    assert "rebuilt the registry from 2 run folder(s)" in repaired.stderr
    after = runs_of(trained)
    assert after.keys() == before.keys()
    for run_id, run in before.items():
        shown = trained.show(run_id)
        assert after[run_id]["status"] == run["status"] == "succeeded"
        assert shown["metrics"]["loss"] and shown["model_version"] is not None
        for key in ("params", "metrics", "model_version", "eval_metrics", "environment"):
            assert shown[key] == shown_before[run_id][key], key
    champion = trained.mllib("models", "show", f"{model}@champion", "--json")
    assert champion.returncode == 0, champion.output
    assert champion.json()["run_id"] == first  # aliases come back with their versions
    evaluated = next(r for r in after.values() if r["action"] == "train+evaluate")
    assert evaluated["eval_metrics"]["accuracy"] == pytest.approx(0.3)
    predicted = trained.mllib("predict", "model.py", "--input", '{"x": 1}')
    assert predicted.returncode == 0, predicted.output
    assert trained.mllib("doctor").returncode == 0


def test_doctor_backs_up_while_in_use_and_restores_setting_the_current_aside(
    trained: Project, tmp_path
):
    backup = tmp_path / "backups" / "registry.db"
    made = trained.mllib("doctor", "--backup", str(backup))
    assert made.returncode == 0, made.output
    assert (backup.stat().st_mode & 0o777) == 0o600
    with sqlite3.connect(backup) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2
    trained.mllib("train", "model.py", "--epochs=2")
    assert len(runs_of(trained)) == 3
    restored = trained.mllib("doctor", "--restore", str(backup))
    assert restored.returncode == 0, restored.output
    assert "The one it replaced is kept as" in restored.stderr
    assert "1 run folder(s) the registry does not list" in restored.stderr  # the third run's
    assert len(runs_of(trained)) == 2
    kept = list(registry(trained).parent.glob("registry.db.replaced-*"))
    with sqlite3.connect(kept[0]) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 3
    assert trained.mllib("doctor").returncode == 1
    assert trained.mllib("doctor", "--repair").returncode == 0
    assert len(runs_of(trained)) == 3

    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"not a database at all")
    refused = trained.mllib("doctor", "--restore", str(damaged))
    one_line_error(refused, f"The backup {damaged} is damaged too")
    assert len(runs_of(trained)) == 3


def test_doctor_hashes_blobs_again_and_moves_damaged_ones_aside(trained: Project):
    run = trained.last_run()
    model = next(a for a in run["artifacts"] if a["kind"] == "model")
    from mllib.store import LocalBlobStore, read_tree

    store = LocalBlobStore(trained.root / ".mllib" / "store")
    weights = read_tree(store, model["sha256"]).files[0].sha256
    path = store.path(weights)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF  # same size: only hashing again finds it
    path.write_bytes(bytes(data))
    checked = trained.mllib("doctor")
    assert checked.returncode == 1
    assert f"1 blob(s) whose content no longer matches their sha256: {weights[:16]}" in (
        checked.stderr
    )
    repaired = trained.mllib("doctor", "--repair")
    assert repaired.returncode == 0 and "moved 1 damaged store blob(s) aside" in repaired.stderr
    assert not store.has(weights)
    retrained = trained.mllib("train", "model.py", "--epochs=5")  # the same content again
    assert retrained.returncode == 0 and store.verify(weights)


def test_a_registry_locked_past_the_busy_timeout_is_a_clear_error_recording_nothing(
    trained: Project,
):
    trained.write("mllib.toml", PROCESS + "[registry]\nbusy_timeout_s = 0.5\n")
    holder = textwrap.dedent(
        f"""
        import sqlite3, time
        conn = sqlite3.connect({str(registry(trained))!r}, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        time.sleep(30)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        for args in (("train", "model.py"), ("keys", "create", "--env", "staging")):
            result = trained.mllib(*args)
            one_line_error(
                result, f"The registry {registry(trained)} stayed locked", "more than 0.5 s"
            )
        assert trained.mllib("runs", "list").returncode == 0  # readers are not blocked
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert len(runs_of(trained)) == 2  # nothing was recorded
    assert len(list((trained.root / ".mllib" / "runs").iterdir())) == 2  # nor left in runs/


def test_a_full_disk_is_a_system_error_leaving_nothing_half_written(
    model_project: Project, mounts: Mounts
):
    model_project.write("mllib.toml", PROCESS)
    state = mounts.tmpfs(model_project.root / ".mllib", "8m")
    first = model_project.mllib("train", "model.py")
    assert first.returncode == 0, first.output
    mounts.fill(state)
    for args in (("train", "model.py"), ("keys", "create", "--env", "staging")):
        result = model_project.mllib(*args)
        assert result.returncode == 3, result.output
        assert "Traceback" not in result.output and "Free some space" in result.stderr
    mounts.free(state)
    with sqlite3.connect(registry(model_project)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(runs_of(model_project)) == 1
    assert model_project.mllib("doctor").returncode == 0


def test_a_run_whose_code_fills_the_disk_fails_as_a_system_error(project: Project, mounts):
    project.write("mllib.toml", PROCESS)
    project.write(
        "model.py",
        """
        import os
        import mllib

        class Filler:
            def __init__(self):
                self.out = mllib.Param("", env="OUT_DIR")

            def train(self):
                with open(os.path.join(self.out, "checkpoint.bin"), "wb") as handle:
                    handle.write(bytes(32 << 20))

            def predict(self, request):
                return 0
        """,
    )
    small = mounts.tmpfs(project.root.parent / "small", "1m")
    result = project.mllib("train", "model.py", env={"OUT_DIR": str(small)})
    assert result.returncode == 3, result.output
    run = project.last_run()
    assert run["failure_class"] == "system_error" and run["error"].startswith("The disk is full")


def test_run_id_prefixes_are_matched_literally(trained: Project):
    run_id = next(iter(runs_of(trained)))
    for pattern in ("____", "%%%%", run_id[:2] + "__", run_id[:3] + "%"):
        result = trained.mllib("runs", "show", pattern)
        assert result.returncode == 4, (pattern, result.output)
        assert f"No run {pattern!r}" in result.stderr
    assert trained.mllib("runs", "show", run_id[:5]).returncode == 0

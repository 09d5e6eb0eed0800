"""`mllib tune` end to end with real runs (the process runtime): a study, pruning a diverging
trial, failures and retries, the search space's usage errors, `--from-study`, the Python API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Project, wait_for

# x is searched; its loss is (x - 2)^2 (+ 0.5 for kind b). `mode` makes trials fail on purpose.
MODEL = """
import os, signal, time
from pathlib import Path

import mllib


class Quad:
    def __init__(self):
        self.x = mllib.Param(0.0)
        self.kind = mllib.Param("a")
        self.steps = mllib.Param(3)
        self.sleep_s = mllib.Param(0.0)
        self.mode = mllib.Param("ok")

    def train(self):
        if self.mode == "fail" or (self.mode == "fail_high" and self.x > 0):
            raise ValueError("this x cannot be trained")
        marker = Path("killed-%s" % self.x)
        if self.mode == "sigkill_once" and not marker.exists():
            marker.write_text("")
            os.kill(os.getpid(), signal.SIGKILL)
        print("training with x=%s" % self.x)
        for i in range(self.steps):
            mllib.log_metric("loss", (self.x - 2) ** 2 + 1.0 / (i + 1), step=i)
            time.sleep(self.sleep_s)

    def evaluate(self):
        return {"val_loss": (self.x - 2) ** 2 + (0.5 if self.kind == "b" else 0.0)}

    def predict(self, request):
        return self.x
"""

# The loss grows each step when lr > 0.3 (diverges) and shrinks otherwise; no evaluate().
DIVERGING = """
import time

import mllib


class Diverge:
    def __init__(self):
        self.lr = mllib.Param(0.1)
        self.epochs = mllib.Param(12)

    def train(self):
        loss = 1.0
        for i in range(self.epochs):
            loss *= 0.7 + self.lr
            mllib.log_metric("loss", loss, step=i)
            time.sleep(0.15)

    def predict(self, request):
        return 0
"""


@pytest.fixture
def quad(project: Project) -> Project:
    project.write("model.py", MODEL)
    project.write("mllib.toml", '[runtime]\nlocal = "process"\n')
    return project


def study(project: Project, name: str) -> dict:
    result = project.mllib("tune", "show", name, "--json")
    assert result.returncode == 0, result.output
    return result.json()


def test_a_study_runs_every_trial_as_a_run_and_finds_the_best_params(quad: Project):
    result = quad.mllib(
        "tune", "model.py", "--param", "x=uniform:-4:4", "--param", "kind=choice:a,b",
        "--metric", "val_loss", "--trials", "8", "--parallel", "2", "--name", "quad",
        "--sampler", "random", "--steps=2",
    )  # fmt: skip
    assert result.returncode == 0, result.output
    assert "objective val_loss: a key of evaluate()'s dict" in result.stderr
    assert "Study quad finished" in result.stderr and "8 complete" in result.stderr
    data = study(quad, "quad")
    assert data["status"] == "finished" and data["metric_source"] == "evaluate"
    assert data["direction"] == "minimize"  # a loss-like name
    assert data["counts"]["complete"] == 8 and len(data["trials"]) == 8
    values = [t["value"] for t in data["trials"]]
    assert data["best_value"] == min(values)
    assert set(data["importances"]) == {"x", "kind"}
    # Each trial is an ordinary run: train+evaluate, with the trial's params and the fixed one.
    for trial in data["trials"]:
        run = quad.show(trial["run_id"])
        assert run["status"] == "succeeded" and run["action"] == "train+evaluate"
        assert run["params"]["x"] == trial["params"]["x"] and run["params"]["steps"] == 2
        assert run["eval_metrics"]["val_loss"] == pytest.approx(trial["value"])
    assert data["best_params"] == {**data["trials"][data["best_trial"]]["params"], "steps": 2}
    listed = quad.mllib("runs", "list", "--json").json()
    assert {r["id"] for r in listed} == {t["run_id"] for t in data["trials"]}
    # runs compare and logs work on trials as on any run.
    best_run = data["best_run_id"]
    other = next(t["run_id"] for t in data["trials"] if t["run_id"] != best_run)
    compared = quad.mllib("runs", "compare", best_run, other, "--json").json()
    assert compared["best"]["eval_metrics"]["val_loss"] == best_run
    logs = quad.mllib("runs", "logs", best_run)
    assert f"training with x={data['best_params']['x']}" in logs.stdout
    assert quad.mllib("tune", "list", "--json").json()[0]["name"] == "quad"
    # The best params train again, as a plain run.
    again = quad.mllib("train", "model.py", "--from-study", "quad", "--evaluate")
    assert again.returncode == 0, again.output
    trained = quad.last_run()
    assert trained["params"]["x"] == data["best_params"]["x"]
    assert trained["eval_metrics"]["val_loss"] == pytest.approx(data["best_value"])
    shown = quad.mllib("tune", "show", "quad")
    assert "Importance" in shown.stdout and "best so far" in shown.stdout


def test_tune_table_in_mllib_toml_and_the_original_spelling(quad: Project):
    quad.write(
        "mllib.toml",
        """
        [runtime]
        local = "process"
        [tune]
        metric = "loss"
        trials = 3
        sampler = "random"
        name = "configured"
        [tune.params]
        x = "int:0:4"
        """,
    )
    result = quad.mllib("model.py", "--tune", "--steps=2")
    assert result.returncode == 0, result.output
    assert "a metric the model logs (its last value)" in result.stderr
    data = study(quad, "configured")
    assert data["space"] == {"x": "int:0:4"} and data["metric_source"] == "logged"
    assert all(isinstance(t["params"]["x"], int) for t in data["trials"])
    # The last logged value is the objective: (x - 2)^2 + 1/2 after two steps.
    for t in data["trials"]:
        assert t["value"] == pytest.approx((t["params"]["x"] - 2) ** 2 + 0.5)
    # A study name is taken once.
    again = quad.mllib("tune")
    assert again.returncode == 2 and "exists already" in again.stderr


def test_cmaes_and_hyperband_a_timeout_and_options_from_the_environment(
    quad: Project, tmp_path: Path
):
    result = quad.mllib(
        "tune", "model.py", "--param", "x=uniform:-4:4", "--metric", "loss", "--trials", "200",
        "--sampler", "cmaes", "--pruner", "hyperband", "--timeout", "5s", "--name", "timed",
        "--seed", "1", "--steps=2",
        env={"MLLIB_TUNE_PARALLEL": "2"},
    )  # fmt: skip
    assert result.returncode == 0, result.output
    data = study(quad, "timed")
    assert data["settings"] == {
        "trials": 200, "parallel": 2, "timeout_s": 5.0, "sampler": "cmaes",
        "pruner": "hyperband", "seed": 1,
    }  # fmt: skip
    # No trial starts after 5 s: the study ends with what it has (each trial takes ~1 s here).
    done = data["counts"]["complete"] + data["counts"]["pruned"]
    assert data["status"] == "finished" and 2 <= done < 200 and data["counts"]["failed"] == 0
    assert data["best_value"] == min(t["value"] for t in data["trials"] if t["value"] is not None)
    # The history plot in the terminal; a PNG needs matplotlib (an optional dependency here).
    shown = quad.mllib("tune", "show", "timed")
    assert shown.returncode == 0 and "best so far" in shown.stdout and "──" in shown.stdout
    png = quad.mllib("tune", "show", "timed", "--output", str(tmp_path / "history.png"))
    assert png.returncode == 1 and "pip install matplotlib" in png.stderr
    assert not (tmp_path / "history.png").exists()
    bad = quad.mllib("tune", "model.py", "--param", "x=uniform:0:1", "--metric", "loss",
                     "--sampler", "grid")  # fmt: skip
    assert bad.returncode == 2 and "grid" in bad.stderr.splitlines()[0], bad.stderr


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("y=uniform:0:1", "the model declares no param `y`"),
        ("x=gaussian:0:1", "unknown distribution 'gaussian'"),
        ("x=uniform:1:0", "needs LO < HI"),
        ("x=loguniform:0:1", "a log scale needs LO > 0"),
        ("steps=uniform:1:5", "`steps` is an int: use int:LO:HI"),
        ("steps=int:1:5.5", "is not a whole number"),
        ("steps=choice:1,two", "not a valid int"),
        ("x", "is not NAME=KIND:ARGS"),
    ],
)
def test_bad_search_spaces_are_one_line_usage_errors(quad: Project, param: str, message: str):
    result = quad.mllib("tune", "model.py", "--param", param, "--metric", "loss")
    assert result.returncode == 2, result.output
    first = result.stderr.strip().splitlines()[0]
    assert first.startswith("Error: ") and message in first, result.stderr
    assert len(result.stderr.strip().splitlines()) == 2  # the error, and what to write instead
    assert not (quad.root / ".mllib" / "runs").exists() or not any(
        (quad.root / ".mllib" / "runs").iterdir()
    )


def test_a_diverging_trial_is_pruned_and_recorded_as_pruned(project: Project):
    project.write("model.py", DIVERGING)
    project.write("mllib.toml", '[runtime]\nlocal = "process"\n')
    # The median pruner lets its first 5 trials finish; a diverging one after them is stopped.
    result = project.mllib(
        "tune", "model.py", "--param", "lr=choice:0.05,0.1,0.9", "--metric", "loss",
        "--trials", "10", "--sampler", "random", "--seed", "4", "--name", "div",
    )  # fmt: skip
    assert result.returncode == 0, result.output
    data = study(project, "div")
    trials = json.dumps([(t["params"], t["state"]) for t in data["trials"]])
    late = [t for t in data["trials"][5:] if t["params"]["lr"] == 0.9]
    assert late and all(t["state"] == "pruned" for t in late), trials
    pruned = [t for t in data["trials"] if t["state"] == "pruned"]
    assert data["counts"]["pruned"] == len(pruned)
    for trial in pruned:
        run = project.show(trial["run_id"])
        assert run["status"] == "cancelled" and run["failure_class"] == "pruned"
        assert run["error"].startswith("pruned by study div (median pruner) at step")
        # Stopped early: fewer points than the 12 epochs a full run logs.
        assert run["metric_summary"]["loss"]["count"] < 12
    listed = project.mllib("runs", "list").stdout
    assert "cancelled (pruned)" in listed
    assert data["best_params"]["lr"] != 0.9


def test_user_errors_stop_the_study_when_most_trials_fail(quad: Project):
    result = quad.mllib(
        "tune", "model.py", "--param", "x=uniform:-1:1", "--metric", "val_loss",
        "--trials", "10", "--name", "failing", "--mode=fail",
    )  # fmt: skip
    assert result.returncode == 1, result.output
    assert "Study failing stopped: most trials failed (3 of 3)" in result.stderr
    assert "this x cannot be trained" in result.stderr
    data = study(quad, "failing")
    assert data["status"] == "stopped" and data["counts"]["failed"] == 3
    assert all(quad.show(t["run_id"])["failure_class"] == "user_error" for t in data["trials"])


def test_a_trial_that_fails_with_a_user_error_is_recorded_and_the_study_goes_on(quad: Project):
    # Seeded random sampling draws x > 0, which this model cannot train, for trials 1 and 4 only.
    result = quad.mllib(
        "tune", "model.py", "--param", "x=uniform:-3:1", "--metric", "val_loss", "--trials", "6",
        "--sampler", "random", "--seed", "7", "--name", "some-fail", "--mode=fail_high",
        "--steps=1",
    )  # fmt: skip
    assert result.returncode == 0, result.output
    data = study(quad, "some-fail")
    assert data["status"] == "finished"
    assert data["counts"] == {"complete": 4, "pruned": 0, "failed": 2, "running": 0, "waiting": 0}
    failed = [t for t in data["trials"] if t["state"] == "failed"]
    assert [t["number"] for t in failed] == [1, 4]
    for trial in failed:
        assert trial["params"]["x"] > 0 and not trial["retried"]  # a user error is not retried
        run = quad.show(trial["run_id"])
        assert run["failure_class"] == "user_error" and "this x cannot be trained" in run["error"]
    assert data["best_params"]["x"] <= 0


def test_a_system_error_trial_is_tried_again_with_the_same_params(quad: Project):
    result = quad.mllib(
        "tune", "model.py", "--param", "x=choice:1.0,3.0", "--metric", "val_loss",
        "--trials", "2", "--name", "retry", "--mode=sigkill_once", "--sampler", "random",
    )  # fmt: skip
    assert result.returncode == 0, result.output
    assert "trying it again" in result.stderr
    data = study(quad, "retry")
    failed = [t for t in data["trials"] if t["state"] == "failed"]
    assert failed and all(t["retried"] for t in failed)
    assert data["counts"]["complete"] == 2
    for t in failed:
        assert quad.show(t["run_id"])["failure_class"] == "system_error"
        again = [r for r in data["trials"] if r["retry_of"] == t["number"]]
        assert again and again[0]["params"] == t["params"] and again[0]["state"] == "complete"


def test_a_metric_no_run_has_stops_the_study_and_names_what_it_found(quad: Project):
    result = quad.mllib(
        "tune", "model.py", "--param", "x=uniform:0:1", "--metric", "accuracy", "--trials", "3"
    )
    assert result.returncode == 1, result.output
    assert "has no metric 'accuracy': evaluate() returned val_loss; it logged loss" in result.stderr


def test_kill_9_of_mllib_tune_then_resume_loses_no_finished_trial(quad: Project):
    """Trials take ~1.5 s each, 2 at once; mllib tune is killed after 3 finished."""
    args = [
        "tune", "model.py", "--param", "x=uniform:-3:3", "--metric", "val_loss", "--trials",
        "7", "--parallel", "2", "--name", "crash", "--steps=3", "--sleep_s=0.5",
    ]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "mllib", *args],
        cwd=quad.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    registry = quad.root / ".mllib" / "registry.db"

    def finished_trials() -> list[tuple[int, str]]:
        return _query(
            registry,
            "SELECT t.number, r.id FROM study_trials t JOIN runs r ON r.id = t.run_id "
            "WHERE r.status = 'succeeded' ORDER BY t.number",
        )

    try:
        wait_for(lambda: len(finished_trials()) >= 3, timeout=90, what="3 finished trials")
        wait_for(lambda: _running_runs(registry) >= 1, timeout=30, what="a running trial")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done_before = finished_trials()
    running_at_kill = _running_ids(registry)
    assert running_at_kill

    result = quad.mllib("tune", "resume", "crash", timeout=180)
    assert result.returncode == 0, result.output
    data = study(quad, "crash")
    by_run = {t["run_id"]: t for t in data["trials"] if t["run_id"]}
    # Every trial whose run had finished is complete, with its run's value: none was lost.
    for number, run_id in done_before:
        trial = by_run[run_id]
        assert trial["number"] == number and trial["state"] == "complete"
        assert trial["value"] == pytest.approx(quad.show(run_id)["eval_metrics"]["val_loss"])
    # The runs killed with it failed as system errors, and their params were tried again.
    for run_id in running_at_kill:
        trial = by_run[run_id]
        run = quad.show(run_id)
        if run["status"] == "succeeded":  # it finished in the moment mllib tune died
            assert trial["state"] == "complete"
            continue
        assert run["failure_class"] == "system_error" and trial["state"] == "failed"
        retry = [t for t in data["trials"] if t["retry_of"] == trial["number"]]
        assert retry and retry[0]["params"] == trial["params"]
        assert retry[0]["state"] == "complete"
    assert data["counts"]["complete"] == 7 and data["status"] == "finished"
    # No trial ran twice with the same params except the retries.
    runs_of = [tuple(sorted(t["params"].items())) for t in data["trials"] if not t["retried"]]
    assert len(runs_of) == len(set(runs_of))


def _query(registry: Path, sql: str) -> list[tuple]:
    """Rows of the registry `mllib tune` writes (none before it has made its tables)."""
    import sqlite3

    if not registry.exists():
        return []
    conn = sqlite3.connect(registry, timeout=30)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # its tables are not made yet
        return []
    finally:
        conn.close()


def _running_ids(registry: Path) -> list[str]:
    rows = _query(
        registry,
        "SELECT r.id FROM study_trials t JOIN runs r ON r.id = t.run_id "
        "WHERE r.status IN ('queued', 'running')",
    )
    return [r[0] for r in rows]


def _running_runs(registry: Path) -> int:
    return len(_running_ids(registry))


def test_the_python_api_returns_the_optuna_study(quad: Project, monkeypatch):
    import mllib

    monkeypatch.chdir(quad.root)
    study = mllib.tune(
        "model.py",
        {"x": "uniform:1:3"},
        metric="val_loss",
        trials=3,
        sampler="random",
        params={"steps": 1},
    )
    assert len(study.trials) == 3 and 1 <= study.best_params["x"] <= 3
    assert study.best_value == pytest.approx((study.best_params["x"] - 2) ** 2)


def _tune_process(project: Project, args: list[str], **env: str) -> subprocess.Popen:
    """`mllib` running in `project` in the background, its stderr a pipe (text) to read."""
    return subprocess.Popen(
        [sys.executable, "-m", "mllib", *args],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def test_ctrl_c_cancels_the_running_trials_and_resume_reruns_them(quad: Project):
    args = [
        "tune", "model.py", "--param", "x=uniform:-3:3", "--metric", "val_loss", "--trials",
        "3", "--parallel", "2", "--name", "stopped", "--steps=20", "--sleep_s=0.2",
    ]  # fmt: skip
    proc = _tune_process(quad, args)
    registry = quad.root / ".mllib" / "registry.db"
    try:
        wait_for(
            lambda: _running_runs(registry) >= 2,
            timeout=60,
            what="two running trials",
        )
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Continue it: mllib tune resume stopped" in stderr
    data = study(quad, "stopped")
    assert data["status"] == "interrupted"
    assert data["counts"]["running"] == 0 and data["counts"]["waiting"] == 2
    stopped = [t for t in data["trials"] if t["run_id"]]
    assert len(stopped) == 2 and all(t["state"] == "failed" and t["retried"] for t in stopped)
    for t in stopped:
        assert quad.show(t["run_id"])["status"] == "cancelled"
    # Resumed, the interrupted params run again first, then the study completes.
    result = quad.mllib("tune", "resume", "stopped", timeout=180)
    assert result.returncode == 0, result.output
    data = study(quad, "stopped")
    assert data["counts"]["complete"] == 3 and data["status"] == "finished"
    for t in stopped:
        rerun = [r for r in data["trials"] if r["retry_of"] == t["number"]]
        assert rerun[0]["params"] == t["params"] and rerun[0]["state"] == "complete"


# Reads the dataset bound as TRAIN_DATA; its loss depends on the data, so a trial that did not
# get the dataset could not reach the value asserted.
READER = """
import os
import pathlib

import mllib


class Reader:
    def __init__(self):
        self.train_path = mllib.Param("missing.txt", env="TRAIN_DATA")
        self.x = mllib.Param(0.0)

    def train(self):
        target = float(pathlib.Path(self.train_path).read_text())
        print("READ", self.train_path, os.environ["TRAIN_DATA"])
        mllib.log_metric("loss", (self.x - target) ** 2)

    def predict(self, request):
        return self.x
"""


def test_data_binds_a_dataset_to_every_trial(project: Project):
    project.write("model.py", READER)
    project.write("mllib.toml", '[runtime]\nlocal = "process"\n')
    project.write("target/value.txt", "3.0\n")
    uploaded = project.mllib("data", "upload", "target/value.txt", "--name", "target", "--json")
    assert uploaded.returncode == 0, uploaded.output
    sha = uploaded.json()["sha256"]

    result = project.mllib(
        "tune", "model.py", "--param", "x=choice:1.0,3.0,5.0", "--metric", "loss",
        "--trials", "3", "--sampler", "random", "--seed", "0", "--name", "withdata",
        "--data", "train=target",
    )  # fmt: skip

    assert result.returncode == 0, result.output
    data = study(project, "withdata")
    assert data["launch"]["data"] == ["train=target"]
    assert data["counts"]["complete"] == 3
    for trial in data["trials"]:
        run = project.show(trial["run_id"])
        assert run["datasets"] == [
            {"env": "TRAIN_DATA", "name": "target", "version": 1, "sha256": sha}
        ]
        assert run["params"]["train_path"].startswith(str(project.root / ".mllib" / "data"))
        assert trial["value"] == pytest.approx((trial["params"]["x"] - 3.0) ** 2)
    assert data["best_value"] == 0.0  # x=3.0 is the dataset's value, if it was tried
    # a dataset that does not exist is refused before any trial runs
    missing = project.mllib(
        "tune", "model.py", "--param", "x=uniform:0:1", "--metric", "loss", "--trials", "1",
        "--name", "nodata", "--data", "train=nosuch",
    )  # fmt: skip
    assert missing.returncode != 0 and "nosuch" in missing.stderr
    assert len(project.mllib("runs", "list", "--json").json()) == 3


def test_progress_is_shown_while_the_study_runs(quad: Project):
    """Each finished trial's line reaches a piped stderr as it ends, not when the study does."""
    args = [
        "tune", "model.py", "--param", "x=uniform:-3:3", "--metric", "val_loss", "--trials",
        "3", "--name", "live", "--steps=3", "--sleep_s=0.4",
    ]  # fmt: skip
    proc = _tune_process(quad, args, CI="true")
    registry = quad.root / ".mllib" / "registry.db"
    seen: list[tuple[str, int, bool]] = []  # (line, trials succeeded then, study still running)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            succeeded = len(_query(registry, "SELECT id FROM runs WHERE status = 'succeeded'"))
            seen.append((line.rstrip("\n"), succeeded, proc.poll() is None))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == 0, "\n".join(line for line, *_ in seen)
    trial_lines = [(line, n, alive) for line, n, alive in seen if line.startswith("trial ")]
    assert [line.split("[")[-1] for line, *_ in trial_lines] == ["1/3]", "2/3]", "3/3]"]
    first, succeeded_then, alive = trial_lines[0]
    assert first.startswith("trial 0: val_loss=")
    # read while the study ran: one trial had finished, the others had not
    assert alive and succeeded_then < 3
    assert any("Study live finished" in line for line, *_ in seen[seen.index(trial_lines[-1]) :])

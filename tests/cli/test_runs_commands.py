"""`mllib runs list/show/compare/logs/plot/rerun/artifacts` as a user reads them."""

import json
import shutil

from tests.conftest import Project


def _train(project: Project, *args: str) -> str:
    result = project.mllib("train", "model.py", "--evaluate", *args)
    assert result.returncode == 0, result.output
    return project.last_run()["id"]


def test_list_filters_and_orders_newest_first(model_project: Project):
    first = _train(model_project, "--epochs=2")
    model_project.mllib("train", "model.py", "--fail_in=train")
    third = _train(model_project, "--epochs=4")
    runs = model_project.mllib("runs", "list", "--json").json()
    assert [r["status"] for r in runs] == ["succeeded", "failed", "succeeded"]
    assert runs[0]["id"] == third and runs[2]["id"] == first
    assert {"id", "status", "failure_class", "params", "eval_metrics"} <= set(runs[0])
    failed = model_project.mllib("runs", "list", "--status", "failed", "--json").json()
    assert len(failed) == 1 and failed[0]["failure_class"] == "user_error"
    assert len(model_project.mllib("runs", "list", "--limit", "1", "--json").json()) == 1
    table = model_project.mllib("runs", "list").stdout
    assert first in table and "user_error" in table
    typo = model_project.mllib("runs", "list", "--status", "succeded")
    assert typo.returncode == 2 and "Use one of: queued, running, succeeded" in typo.stderr
    assert model_project.mllib("runs", "list", "--limit", "0").returncode == 2


def test_compare_shows_differences_and_the_best_run(model_project: Project):
    low = _train(model_project, "--learning_rate=0.1")
    high = _train(model_project, "--learning_rate=0.3")
    data = model_project.mllib("runs", "compare", low, high, "--json").json()
    assert data["params"]["learning_rate"] == {low: 0.1, high: 0.3}
    assert data["differs"]["params"] == ["learning_rate"]
    assert data["best"]["eval_metrics"]["accuracy"] == high  # higher is better
    text = model_project.mllib("runs", "compare", low, high).stdout
    assert "learning_rate" in text and "★" in text
    assert model_project.mllib("runs", "compare", low).returncode == 2


def test_compare_marks_the_best_training_and_evaluation_metric_of_one_name_apart(
    project: Project,
):
    project.write(
        "model.py",
        """
        import mllib

        class Model:
            def __init__(self):
                self.lr = mllib.Param(0.1)
            def train(self):
                mllib.log_metric("loss", self.lr)
            def evaluate(self):
                return {"loss": 1 - self.lr}
            def predict(self, request): ...
        """,
    )
    ids = []
    for lr in ("0.2", "0.6"):
        result = project.mllib(
            "train", "model.py", f"--lr={lr}", "--evaluate", "--runtime", "process"
        )
        assert result.returncode == 0, result.output
        ids.append(project.last_run()["id"])
    data = project.mllib("runs", "compare", *ids, "--json").json()
    assert data["best"] == {"metrics": {"loss": ids[0]}, "eval_metrics": {"loss": ids[1]}}


def test_logs_show_and_plot(model_project: Project, tmp_path):
    run_id = _train(model_project, "--epochs=5")
    assert "params lr=0.1 epochs=5" in model_project.mllib("runs", "logs", run_id).stdout
    shown = model_project.mllib("runs", "show", run_id)
    for text in (
        "succeeded",
        "learning_rate = 0.1",
        "loss",
        "accuracy",
        "artifacts/notes.json",
        "code hash",
    ):
        assert text in shown.stdout
    plot = model_project.mllib("runs", "plot", run_id, "--metric", "loss")
    assert plot.returncode == 0 and "loss" in plot.stdout and len(plot.stdout.splitlines()) > 10
    missing = model_project.mllib("runs", "plot", run_id, "--metric", "acc")
    assert missing.returncode == 4 and "its metrics: loss, weight" in missing.stderr
    without = tmp_path / "no-matplotlib" / "matplotlib"  # matplotlib made absent, wherever it is
    without.mkdir(parents=True)
    (without / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    png = model_project.mllib(
        "runs", "plot", run_id, "--metric", "loss", "--output", str(tmp_path / "loss.png"),
        env={"PYTHONPATH": str(without.parent)},
    )  # fmt: skip
    assert png.returncode == 1 and "pip install matplotlib" in png.stderr
    assert not (tmp_path / "loss.png").exists()
    assert model_project.mllib("runs", "show", "zzzzzzzz").returncode == 4


def test_rerun_reproduces_a_run_after_the_code_changed(model_project: Project):
    original = _train(model_project, "--epochs=4", "--learning_rate=0.2")
    before = model_project.show(original)
    model_project.write(
        "model.py",
        (model_project.root / "model.py")
        .read_text()
        .replace("self.weight += self.learning_rate", "self.weight += 100"),
    )
    result = model_project.mllib("runs", "rerun", original)
    assert result.returncode == 0, result.output
    again = model_project.last_run()
    assert again["rerun_of"] == original and again["code_hash"] == before["code_hash"]
    assert again["params"] == before["params"]
    assert again["metrics"] == before["metrics"] and again["eval_metrics"] == before["eval_metrics"]


def test_artifacts_export(model_project: Project, tmp_path):
    run_id = _train(model_project, "--epochs=3")
    result = model_project.mllib("runs", "artifacts", run_id, "--output", str(tmp_path / "out"))
    assert result.returncode == 0, result.output
    assert json.loads((tmp_path / "out" / "artifacts" / "notes.json").read_text()) == {"epochs": 3}
    assert (tmp_path / "out" / "model" / "model.pkl").is_file()

    notes = tmp_path / "out" / "artifacts" / "notes.json"
    notes.write_text("my own notes")
    shutil.rmtree(tmp_path / "out" / "model")
    again = model_project.mllib("runs", "artifacts", run_id, "--output", str(tmp_path / "out"))
    assert again.returncode == 2 and str(notes) in again.stderr and "--force" in again.stderr
    assert notes.read_text() == "my own notes"  # nothing was written, not even the model
    assert not (tmp_path / "out" / "model").exists()
    forced = model_project.mllib(
        "runs", "artifacts", run_id, "--output", str(tmp_path / "out"), "--force"
    )
    assert forced.returncode == 0, forced.output
    assert json.loads(notes.read_text()) == {"epochs": 3}


def test_tables_and_progress_piped_into_a_file_are_whole_lines(project: Project):
    """Not a terminal, no CI, no NO_COLOR: tables are not cut to 80 columns, progress is plain."""
    import os
    import subprocess
    import sys

    name = "AModelClassWithAVeryLongNameThatWouldNotFitInEightyColumns"
    project.write(
        "model.py",
        f"""
        class {name}:
            def train(self): ...
            def evaluate(self):
                return {{"accuracy_on_the_held_out_set": 0.5, "mean_squared_error": 0.25}}
            def predict(self, request): ...
        """,
    )
    project.write("data.csv", "x\n1\n")
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR", "CI")}

    def mllib(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mllib", *args],
            cwd=project.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert mllib("train", "model.py", "--evaluate", "--runtime", "process").returncode == 0
    table = mllib("runs", "list").stdout
    row = next(line for line in table.splitlines() if name in line)
    assert "accuracy_on_the_held_out_set=0.5" in row and "…" not in table
    upload = mllib("data", "upload", "data.csv", "--name", "tiny")
    assert upload.returncode == 0, upload.stderr
    assert "Uploading tiny: 4 B / 4 B (100%)" in upload.stderr
    assert "\n✔ Uploaded tiny@1" in upload.stderr  # on its own line, after the progress


def test_times_are_shown_in_local_time_the_same_way_everywhere(monkeypatch):
    import time

    from mllib.cli.output import fmt_time

    assert fmt_time(None) == "-"
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert fmt_time("2026-01-31T23:05:09.123456Z") == "2026-02-01 08:05:09"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_narrow_terminal_never_cuts_a_run_id(model_project: Project):
    run_id = _train(model_project, "--runtime", "process")
    table = model_project.mllib("runs", "list", env={"COLUMNS": "50"}).stdout
    assert run_id in table


def test_a_run_id_prefix_under_4_characters_says_so(model_project: Project):
    run_id = _train(model_project)
    short = model_project.mllib("runs", "show", run_id[:3])
    assert short.returncode == 4
    assert f"No run '{run_id[:3]}': a run id prefix needs 4 or more characters" in short.stderr
    assert model_project.mllib("runs", "show", run_id[:4]).returncode == 0

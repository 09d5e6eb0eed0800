"""A training run shows its evaluations: `mllib evaluate --run A` records a run of its own, and
`runs show/list/compare` (and their --json) show A's latest evaluation and how many it has, and
compare on it. The real `mllib` command on a real registry."""

from __future__ import annotations

from tests.conftest import Project


def run_id(project: Project, *args: str) -> str:
    result = project.mllib(*args, "--runtime", "process")
    assert result.returncode == 0, result.output
    return project.mllib("runs", "list", "--json", "--limit", "1").json()[0]["id"]


def test_a_training_run_shows_its_latest_evaluation_and_compares_on_it(model_project: Project):
    # A: trained, then evaluated twice as runs of their own (Basic's accuracy is lr * epochs).
    a = run_id(model_project, "train", "model.py", "--learning_rate=0.5")
    first = run_id(model_project, "evaluate", "model.py", "--run", a)
    second = run_id(model_project, "evaluate", "--run", a, "model.py")
    # B: evaluated in its own training run; C: never evaluated; D: its evaluation failed.
    b = run_id(model_project, "train", "model.py", "--evaluate")
    c = run_id(model_project, "train", "model.py", "--epochs=4")
    d = run_id(model_project, "train", "model.py", "--fail_in=evaluate")
    failed = model_project.mllib("evaluate", "--run", d, "model.py", "--runtime", "process")
    assert failed.returncode == 1, failed.output

    shown = model_project.show(a)
    assert shown["eval_metrics"] == {}  # A's own run did not evaluate
    assert shown["evaluation"] == {
        "run_id": second,
        "eval_metrics": {"accuracy": 1.5, "loss": 1 / 3},
        "ended_at": model_project.show(second)["ended_at"],
    }
    assert shown["evaluations"] == 2
    own = model_project.show(b)
    assert own["evaluation"]["run_id"] == b and own["evaluations"] == 1
    assert (
        own["evaluation"]["eval_metrics"]
        == own["eval_metrics"]
        == {
            "accuracy": 0.3,
            "loss": 1 / 3,
        }
    )
    assert model_project.show(c)["evaluation"] is None and model_project.show(c)["evaluations"] == 0
    assert model_project.show(d)["evaluation"] is None  # a failed evaluation is not one
    assert model_project.show(first)["evaluation"] is None  # only training runs have them

    listed = {r["id"]: r for r in model_project.mllib("runs", "list", "--json").json()}
    assert listed[a]["evaluation"] == shown["evaluation"] and listed[a]["evaluations"] == 2
    assert listed[c]["evaluation"] is None

    text = model_project.mllib("runs", "show", a).stdout
    assert f"Evaluation (latest of 2: run {second}, " in text
    assert "accuracy = 1.5" in text
    own_text = model_project.mllib("runs", "show", b).stdout
    assert "Evaluation (the only one: in the training run, " in own_text
    table = model_project.mllib("runs", "list").stdout
    (row,) = [line for line in table.splitlines() if line.startswith(a)]
    assert "accuracy=1.5 loss=0.333333 (2 evals)" in row

    compared = model_project.mllib("runs", "compare", a, b, c, "--json").json()
    assert compared["eval_metrics"]["accuracy"] == {a: 1.5, b: 0.3, c: None}
    assert compared["best"]["eval_metrics"] == {"accuracy": a, "loss": a}  # a tie: the first
    assert compared["evaluated_by"] == {a: second, b: b, c: None}
    assert compared["evaluations"] == {a: 2, b: 1, c: 0}
    assert "accuracy" in compared["differs"]["eval_metrics"]
    side = model_project.mllib("runs", "compare", a, b).stdout
    (by,) = [line for line in side.splitlines() if "evaluated by" in line]
    assert f"{second} (latest of 2)" in by and "this run" in by
    (accuracy,) = [line for line in side.splitlines() if line.strip().startswith("accuracy")]
    assert "1.5 ★" in accuracy

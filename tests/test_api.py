"""The Python API a notebook uses is the same code the CLI runs."""

import os

import pytest

import mllib
from tests.conftest import Project


@pytest.fixture
def in_project(model_project: Project):
    old = os.getcwd()
    os.chdir(model_project.root)
    yield model_project
    os.chdir(old)


def test_train_evaluate_predict_from_python(in_project: Project, capsys):
    run = mllib.train("model.py", {"epochs": 2, "learning_rate": 0.5}, evaluate=True)
    assert run.status == "succeeded" and run.action == "train+evaluate"
    assert "params lr=0.5 epochs=2" in capsys.readouterr().out
    assert mllib.predict({"x": 2}, "model.py", run=run.id) == {"y": 2.0}
    evaluation = mllib.evaluate("model.py", run=run.id, echo=None)
    assert evaluation.source_run_id == run.id and evaluation.status == "succeeded"
    shown = in_project.show(run.id)
    assert shown["eval_metrics"]["accuracy"] == 1.0
    # A version by name (no model file), or by the best value of an evaluation metric.
    assert mllib.predict({"x": 1}, version="Basic:1", notify=None) == {"y": 1.0}
    said = []
    assert mllib.predict({"x": 1}, best="loss", notify=said.append) == {"y": 1.0}
    best = f"using Basic v1 (run {run.id}): the best loss (0.5, lowest wins) of 1 evaluated"
    assert said == [best + " version of Basic"]


def test_create_resolves_params_outside_a_run(in_project: Project):
    import importlib.util

    spec = importlib.util.spec_from_file_location("basic_model", in_project.root / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = mllib.create(module.Basic, epochs="4")
    assert model.epochs == 4 and model.learning_rate == 0.1
    model.train()  # log_metric and artifact_dir work (and record nothing) outside a run
    assert model.evaluate()["accuracy"] == pytest.approx(0.4)


def test_public_api_is_what_all_says():
    assert sorted(mllib.__all__) == sorted(
        [
            "BadRequest",
            "MllibError",
            "Param",
            "__version__",
            "artifact_dir",
            "create",
            "current_run",
            "evaluate",
            "log_artifact",
            "log_metric",
            "log_metrics",
            "predict",
            "rerun",
            "train",
            "tune",
        ]
    )
    for name in mllib.__all__:
        assert getattr(mllib, name) is not None

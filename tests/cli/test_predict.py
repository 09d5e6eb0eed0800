"""`mllib predict`: JSON in, JSON out, through the one encoder serving will reuse."""

import json

from tests.conftest import Project

NUMPY_MODEL = """
import mllib

class Arrays:
    def __init__(self):
        self.kind = mllib.Param("numpy")
    def train(self):
        print("a line the model prints")
    def predict(self, request):
        import numpy as np
        if self.kind == "numpy":
            return {"scores": np.arange(3, dtype=np.float32) * request["scale"], "best": np.int64(2), "ok": np.bool_(True)}
        if self.kind == "object":
            return {"value": object()}
        if self.kind == "refuse":
            raise mllib.BadRequest("expected 'scale' to be a number", status=422)
        raise RuntimeError("predict broke")
"""


def test_predict_prints_json_from_a_trained_run(model_project: Project):
    model_project.mllib("train", "model.py", "--epochs=2")
    run_id = model_project.last_run()["id"]
    result = model_project.mllib("predict", "model.py", "--run", run_id, "--input", '{"x": 3}')
    assert result.returncode == 0, result.output
    assert json.loads(result.stdout) == {"y": 0.6000000000000001}
    # Without --run: the newest successful training run with the same params.
    assert json.loads(
        model_project.mllib("predict", "model.py", "--epochs=2", "--input", '{"x": 1}').stdout
    ) == {"y": 0.2}
    (model_project.root / "req.json").write_text('{"x": 10}')
    assert (
        json.loads(
            model_project.mllib(
                "model.py", "--predict", "--epochs=2", "--input", "@req.json"
            ).stdout
        )["y"]
        > 1.9
    )
    piped = model_project.mllib(
        "predict", "model.py", "--epochs=2", "--input", "-", input='{"x": 0}'
    )
    assert json.loads(piped.stdout) == {"y": 0.0}


def test_numpy_values_become_json_and_model_prints_stay_off_stdout(project: Project):
    project.write("model.py", NUMPY_MODEL)
    assert project.mllib("train", "model.py").returncode == 0
    result = project.mllib("predict", "model.py", "--input", '{"scale": 2}')
    assert result.returncode == 0, result.output
    assert json.loads(result.stdout) == {"scores": [0.0, 2.0, 4.0], "best": 2, "ok": True}


def test_unserialisable_results_and_bad_input_are_clear_errors(project: Project):
    project.write("model.py", NUMPY_MODEL)
    project.mllib("train", "model.py", "--kind=object")
    result = project.mllib("predict", "model.py", "--kind=object", "--input", "{}")
    assert result.returncode == 1
    assert "builtins.object" in result.stderr and "not JSON-serialisable" in result.stderr
    bad = project.mllib("predict", "model.py", "--kind=object", "--input", "{not json")
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr
    project.mllib("train", "model.py", "--kind=raise")
    broken = project.mllib("predict", "model.py", "--kind=raise", "--input", "{}")
    assert broken.returncode == 1 and "RuntimeError: predict broke" in broken.stderr


def test_a_request_predict_refuses_is_a_usage_error_in_its_own_words(project: Project):
    project.write("model.py", NUMPY_MODEL)
    project.mllib("train", "model.py", "--kind=refuse")
    result = project.mllib("predict", "model.py", "--kind=refuse", "--input", '{"scale": "x"}')
    assert result.returncode == 2, result.output
    assert result.stdout == ""
    assert "predict() refused the request: expected 'scale' to be a number" in result.stderr
    assert "Traceback" not in result.stderr

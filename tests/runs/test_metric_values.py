"""NaN and infinite metrics stay what they are: shown as nan/inf, valid JSON, never "no value"."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import Project

DIVERGING = """
import math
import mllib


class Diverging:
    def __init__(self):
        self.lr = mllib.Param(10.0)

    def train(self):
        for value in (1.0, math.inf, math.nan):
            mllib.log_metric("loss", value)
        mllib.log_metric("grad_norm", math.nan)

    def evaluate(self):
        return {"accuracy": float("nan"), "loss": 2.0}

    def predict(self, request):
        return request
"""


def test_a_diverged_training_shows_nan_not_a_missing_value(project: Project):
    project.write("model.py", DIVERGING)
    result = project.mllib("train", "model.py", "--evaluate", "--runtime=process")
    assert result.returncode == 0, result.output  # evaluate() returning NaN is recorded
    assert "loss=nan" in result.stderr and "accuracy=nan" in result.stderr
    run_id = project.mllib("runs", "list", "--json").json()[0]["id"]

    shown = project.mllib("runs", "show", run_id).stdout
    loss_row = next(line.split() for line in shown.splitlines() if line.strip().startswith("loss "))
    assert loss_row == ["loss", "nan", "1", "inf", "3"]  # last, min, max (NaN left out), points
    assert "accuracy = nan" in shown

    raw = project.mllib("runs", "show", run_id, "--json").stdout
    data = json.loads(raw, parse_constant=invalid)
    assert data["metrics"] == {"loss": "NaN", "grad_norm": "NaN"}
    assert data["metric_summary"]["loss"]["max"] == "Infinity"
    assert data["metric_summary"]["grad_norm"]["min"] == "NaN"
    assert data["eval_metrics"] == {"accuracy": "NaN", "loss": 2.0}
    assert math.isnan(float(data["metrics"]["loss"]))  # float() reads the spelling back

    project.mllib("train", "model.py", "--evaluate", "--runtime=process", "--lr=1")
    other = project.mllib("runs", "list", "--json").json()[0]["id"]
    compared = project.mllib("runs", "compare", run_id, other, "--json")
    data = json.loads(compared.stdout, parse_constant=invalid)
    assert data["eval_metrics"]["accuracy"] == {run_id: "NaN", other: "NaN"}
    assert data["best"]["eval_metrics"]["accuracy"] is None  # NaN is never the best
    assert "nan" in project.mllib("runs", "compare", run_id, other).stdout


def invalid(constant: str):
    pytest.fail(f"invalid JSON: bare {constant}")

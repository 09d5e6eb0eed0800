"""`mllib data import label-studio`: a Label Studio JSON export (written here in the format Label
Studio documents for its JSON export: tasks with `data` and `annotations`, each annotation a
`result` list of regions with `from_name`, `type` and `value`) becomes a dataset version that a
real run's evaluate() reads through `--data`."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.conftest import Project

EXPORT = [
    {
        "id": 1,
        "data": {"text": "Great battery, fast delivery"},
        "annotations": [
            {
                "id": 10,
                "created_at": "2026-11-01T10:00:00.000000Z",
                "updated_at": "2026-11-01T10:00:00.000000Z",
                "was_cancelled": False,
                "result": [
                    {
                        "from_name": "sentiment",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": ["Negative"]},
                    }
                ],
            },
            {
                "id": 11,
                "created_at": "2026-11-02T09:00:00.000000Z",
                "updated_at": "2026-11-02T09:30:00.000000Z",
                "was_cancelled": False,
                "result": [
                    {
                        "id": "a1",
                        "from_name": "sentiment",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": ["Positive"]},
                    },
                    {
                        "id": "a2",
                        "from_name": "aspect",
                        "to_name": "text",
                        "type": "labels",
                        "value": {"start": 6, "end": 13, "text": "battery", "labels": ["Product"]},
                    },
                    {
                        "id": "a3",
                        "from_name": "comment",
                        "to_name": "text",
                        "type": "textarea",
                        "value": {"text": ["praises the battery"]},
                    },
                ],
            },
        ],
        "predictions": [],
    },
    {
        "id": 2,
        "data": {"text": "Broke after a week"},
        "annotations": [
            {
                "id": 12,
                "created_at": "2026-11-02T10:00:00.000000Z",
                "was_cancelled": False,
                "result": [
                    {
                        "from_name": "sentiment",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": ["Negative"]},
                    },
                    {
                        "from_name": "stars",
                        "to_name": "text",
                        "type": "rating",
                        "value": {"rating": 1},
                    },
                ],
            }
        ],
    },
    {
        "id": 3,
        "data": {"text": "skipped by the annotator"},
        "annotations": [{"id": 13, "was_cancelled": True, "result": []}],
    },
    {"id": 4, "data": {"text": "not annotated yet"}, "annotations": []},
]

MODEL = """
import json
import os

import mllib


class Sentiment:
    def __init__(self):
        self.eval_data = mllib.Param("", env="EVAL_DATA")

    def train(self):
        pass

    def predict(self, request):
        return "Negative" if "broke" in request["text"].lower() else "Positive"

    def evaluate(self):
        with open(os.path.join(self.eval_data, "examples.jsonl")) as lines:
            examples = [json.loads(line) for line in lines]
        right = sum(
            self.predict(e["data"]) == e["annotations"]["sentiment"] for e in examples
        )
        return {"accuracy": right / len(examples), "examples": len(examples)}
"""


@pytest.fixture
def studio(tmp_path: Path) -> Project:
    """A project folder (this folder's `project` fixture is a bare path)."""
    root = tmp_path / "studio"
    root.mkdir()
    return Project(root)


def test_an_export_becomes_a_dataset_that_evaluate_reads(studio: Project):
    project = studio
    project.write("export.json", json.dumps(EXPORT))
    result = project.mllib("data", "import", "label-studio", "export.json", "--name", "reviews")
    assert result.returncode == 0, result.output
    assert result.stdout.strip() == "reviews@1"
    assert "2 annotated task(s); 2 without an annotation left out" in result.stderr

    shown = project.mllib("data", "show", "reviews", "--json").json()
    assert sorted(f["path"] for f in shown["files"]) == ["examples.jsonl", "export.json"]

    project.write("model.py", MODEL)
    run = project.mllib(
        "train", "model.py", "--evaluate", "--data", "eval=reviews", "--runtime", "process"
    )
    assert run.returncode == 0, run.output
    last = project.last_run()
    assert last["eval_metrics"] == {"accuracy": 1.0, "examples": 2.0}
    assert last["datasets"][0]["name"] == "reviews"

    # The same export again is the same version; a new annotation makes a new one.
    again = project.mllib("data", "import", "label-studio", "export.json", "--name", "reviews")
    assert again.returncode == 0 and again.stdout.strip() == "reviews@1"
    export = copy.deepcopy(EXPORT)
    export[3]["annotations"] = [
        {"id": 14, "result": [{"from_name": "sentiment", "type": "choices",
                               "value": {"choices": ["Neutral"]}}]}
    ]  # fmt: skip
    project.write("export.json", json.dumps(export))
    newer = project.mllib("data", "import", "label-studio", "export.json", "--name", "reviews")
    assert newer.stdout.strip() == "reviews@2", newer.output


def test_the_lines_hold_each_controls_value():
    from mllib.datasets.label_studio import to_example

    first = to_example(EXPORT[0])
    assert first == {
        "id": 1,
        "data": {"text": "Great battery, fast delivery"},
        "annotations": {  # the newer annotation (id 11) wins over the older one
            "sentiment": "Positive",
            "aspect": [{"start": 6, "end": 13, "text": "battery", "labels": ["Product"]}],
            "comment": "praises the battery",
        },
    }
    assert to_example(EXPORT[1])["annotations"] == {"sentiment": "Negative", "stars": 1}
    assert to_example(EXPORT[2]) is None  # cancelled
    multi = {
        "data": {"text": "x"},
        "annotations": [
            {"result": [{"from_name": "tags", "type": "choices",
                         "value": {"choices": ["a", "b"]}}]}
        ],
    }  # fmt: skip
    assert to_example(multi)["annotations"] == {"tags": ["a", "b"]}


def test_bad_exports_are_one_line_errors_and_leave_no_dataset(studio: Project):
    project = studio
    project.write("notjson.json", "{oops")
    bad = project.mllib("data", "import", "label-studio", "notjson.json", "--name", "x")
    assert bad.returncode == 2 and "notjson.json is not JSON" in bad.output
    project.write("csv.json", json.dumps({"tasks": []}))
    wrong = project.mllib("data", "import", "label-studio", "csv.json", "--name", "x")
    assert wrong.returncode == 2 and "is not a list of tasks" in wrong.output
    project.write("empty.json", json.dumps(EXPORT[2:3]))
    empty = project.mllib("data", "import", "label-studio", "empty.json", "--name", "x")
    assert empty.returncode == 2 and "none has an annotation" in empty.output
    missing = project.mllib("data", "import", "label-studio", "nope.json", "--name", "x")
    assert missing.returncode == 4
    assert project.mllib("data", "list", "--json").json() == []

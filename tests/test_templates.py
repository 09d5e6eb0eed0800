"""Every template `mllib init` writes trains and evaluates offline, and predicts."""

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.conftest import run_cli

REQUESTS = {
    "minimal": {"x": [0.5, 1.0]},
    "sklearn": {"features": [0.1] * 20},
    "pytorch": {"x": [[0.1, 0.2, 0.3, 0.4]]},
}
NEEDS = {"sklearn": "sklearn", "pytorch": "torch"}


@pytest.mark.parametrize("template", ["minimal", "sklearn", "pytorch"])
def test_template_trains_evaluates_and_predicts_offline(template, tmp_path):
    needed = NEEDS.get(template)
    if needed and importlib.util.find_spec(needed) is None:
        pytest.fail(
            f"{needed} is not installed; scripts/test.sh installs it for the {template} template"
        )
    assert run_cli(["init", "proj", "--template", template], tmp_path).returncode == 0
    project = tmp_path / "proj"
    trained = run_cli(["train", "model.py", "--evaluate"], project, timeout=300)
    assert trained.returncode == 0, trained.output
    run = run_cli(["runs", "list", "--json"], project).json()[0]
    assert run["status"] == "succeeded" and run["eval_metrics"], run
    predicted = run_cli(
        ["predict", "model.py", "--input", json.dumps(REQUESTS[template])], project, timeout=300
    )
    assert predicted.returncode == 0, predicted.output
    assert json.loads(predicted.stdout)
    # torch warns on every import when numpy is missing from the run's environment (its image).
    assert "Failed to initialize NumPy" not in trained.output + predicted.output


def test_init_refuses_to_overwrite(tmp_path):
    assert run_cli(["init", "proj"], tmp_path).returncode == 0
    again = run_cli(["init", "proj"], tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr
    assert run_cli(["init", "proj", "--force"], tmp_path).returncode == 0
    unknown = run_cli(["init", "x", "--template", "keras"], tmp_path)
    assert unknown.returncode == 2 and "minimal, pytorch, sklearn" in unknown.stderr


def test_init_into_a_file_or_below_one_is_a_one_line_error(tmp_path):
    (tmp_path / "notes.txt").write_text("mine\n")
    onto = run_cli(["init", "notes.txt"], tmp_path)
    assert onto.returncode == 2 and "is a file, not a folder" in onto.stderr
    below = run_cli(["init", "notes.txt/proj"], tmp_path)  # the OS refuses: still no traceback
    assert below.returncode == 1, below.output
    assert "Traceback" not in below.stderr and "Not a directory" in below.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_minimal_template_runs_as_a_plain_script_outside_mllib(tmp_path):
    assert run_cli(["init", "proj"], tmp_path).returncode == 0
    result = subprocess.run(
        [sys.executable, "model.py"],
        cwd=tmp_path / "proj",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "'r2'" in result.stdout
    assert "not inside an mllib run" in result.stderr  # said once, and nothing breaks
    assert result.stderr.count("log_metric()") == 1

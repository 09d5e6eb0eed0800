"""Choosing a trained model by name and version: `--model NAME[:VERSION]`, `NAME@ALIAS`,
`--best METRIC`, the newest version by default, and `mllib models list|show|alias`. The real
`mllib` command on real registries."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Project, model_source


def train(project: Project, *params: str) -> str:
    result = project.mllib("train", "model.py", "--runtime", "process", *params)
    assert result.returncode == 0, result.output
    return project.mllib("runs", "list", "--json", "--limit", "1").json()[0]["id"]


def predicted(result) -> float:
    assert result.returncode == 0, result.output
    return json.loads(result.stdout)["y"]


def using(result) -> str:
    """The line saying which version a command used."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("mllib: using ")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, str]]:
    """Three versions of Basic (weight = learning_rate * epochs): v1 0.3, v2 1.0, v3 2.0; v1
    and v2 evaluated in their training run (accuracy = weight, loss = 1 / epochs)."""
    project = Project(tmp_path_factory.mktemp("versions") / "proj")
    project.write("model.py", model_source("basic"))
    runs = {
        1: train(project, "--evaluate"),
        2: train(project, "--evaluate", "--learning_rate=0.5", "--epochs=2"),
        3: train(project, "--learning_rate=0.2", "--epochs=10"),
    }
    return project.root, runs


@pytest.fixture
def versions(trained, model_project: Project) -> dict[int, str]:
    """`trained`'s versions in this test's own copy of the project (registry, store and all)."""
    source, runs = trained
    shutil.rmtree(model_project.root)
    shutil.copytree(source, model_project.root)
    return runs


def test_predict_and_evaluate_use_the_newest_version_by_default_and_say_which(model_project):
    first = train(model_project, "--epochs=3")
    newest = train(model_project, "--epochs=5")
    # Before, default params found no training run: both were trained with --epochs.
    result = model_project.mllib("predict", "model.py", "--input", '{"x": 1}')
    assert predicted(result) == pytest.approx(0.5)
    assert using(result) == (
        f"mllib: using Basic v2 (run {newest}): the newest version of Basic; pick another "
        "with --model Basic:VERSION"
    )
    # Params on the command line still find the newest version trained with them.
    older = model_project.mllib("predict", "model.py", "--epochs=3", "--input", '{"x": 1}')
    assert predicted(older) == pytest.approx(0.3)
    assert using(older) == (
        f"mllib: using Basic v1 (run {first}): the newest version trained with these params"
    )
    evaluated = model_project.mllib("evaluate", "model.py", "--runtime", "process")
    assert evaluated.returncode == 0, evaluated.output
    assert f"using Basic v2 (run {newest})" in using(evaluated)
    assert model_project.last_run()["source_run_id"] == newest
    # A param written first (the model file from mllib.toml or ./model.py) is a param.
    bare = model_project.mllib("predict", "--epochs=3", "--input", '{"x": 1}')
    assert predicted(bare) == pytest.approx(0.3)


def test_model_names_a_version_with_no_model_file_needed(model_project, versions):
    (model_project.root / "model.py").unlink()  # predict and serve load the version's own code
    one = model_project.mllib("predict", "--model", "Basic:1", "--input", '{"x": 1}')
    assert predicted(one) == pytest.approx(0.3)
    assert using(one) == f"mllib: using Basic v1 (run {versions[1]})"
    assert predicted(model_project.mllib("predict", "--model", "Basic:v2", "-i", '{"x": 1}')) == 1.0
    newest = model_project.mllib("predict", "--model", "Basic", "--input", '{"x": 1}')
    assert predicted(newest) == pytest.approx(2.0)
    assert using(newest).endswith(": the newest version of Basic")
    latest = model_project.mllib("predict", "--model", "Basic@latest", "--input", '{"x": 1}')
    assert predicted(latest) == pytest.approx(2.0)


def test_aliases_name_one_version_move_and_are_removed(model_project, versions):
    made = model_project.mllib("models", "alias", "Basic:1", "champion")
    assert made.returncode == 0, made.output
    assert "Basic@champion now names v1." in made.stderr
    champion = model_project.mllib("predict", "--model", "Basic@champion", "-i", '{"x": 1}')
    assert predicted(champion) == pytest.approx(0.3)
    assert using(champion) == f"mllib: using Basic v1 (run {versions[1]}): Basic@champion"

    moved = model_project.mllib("models", "alias", "Basic:2", "champion")
    assert "Basic@champion now names v2 (moved from v1)." in moved.stderr
    model_project.mllib("models", "alias", "Basic@champion", "baseline")  # alias of an alias
    again = model_project.mllib("predict", "--model", "Basic@champion", "-i", '{"x": 1}')
    assert predicted(again) == pytest.approx(1.0)
    shown = model_project.mllib("models", "show", "Basic", "--json").json()
    assert shown["aliases"] == {"baseline": 2, "champion": 2}
    assert [v["aliases"] for v in shown["versions"]] == [[], ["baseline", "champion"], []]

    removed = model_project.mllib("models", "alias", "--rm", "Basic@champion")
    assert removed.returncode == 0 and "Removed Basic@champion (it named v2)." in removed.stderr
    gone = model_project.mllib("predict", "--model", "Basic@champion", "-i", '{"x": 1}')
    assert gone.returncode == 4
    assert "Model 'Basic' has no alias 'champion'" in gone.stderr
    assert "Its aliases: baseline (v2)." in gone.stderr
    evaluated = model_project.mllib("evaluate", "--model", "Basic@baseline", "--runtime=process")
    assert evaluated.returncode == 0, evaluated.output
    assert model_project.last_run()["source_run_id"] == versions[2]


def test_best_picks_by_the_latest_evaluation_lowest_for_loss_like_names(model_project, versions):
    best = model_project.mllib("predict", "--best", "accuracy", "--input", '{"x": 1}')
    assert predicted(best) == pytest.approx(1.0)  # v3 would be better, but is not evaluated
    assert using(best) == (
        f"mllib: using Basic v2 (run {versions[2]}): the best accuracy (1, highest wins) of 2 "
        "evaluated versions of Basic"
    )
    lowest = model_project.mllib("predict", "--model", "Basic", "--best", "loss", "-i", '{"x": 1}')
    assert "using Basic v1" in using(lowest) and "(0.333333, lowest wins)" in using(lowest)

    # Evaluating v3 later (a run of its own) makes it a candidate.
    evaluated = model_project.mllib("evaluate", "--model", "Basic:3", "--runtime", "process")
    assert evaluated.returncode == 0, evaluated.output
    now = model_project.mllib("predict", "--best", "accuracy", "--input", '{"x": 1}')
    assert predicted(now) == pytest.approx(2.0)
    assert "of 3 evaluated versions" in using(now)
    lowest = model_project.mllib("predict", "--best", "loss", "--input", '{"x": 1}')
    assert predicted(lowest) == pytest.approx(2.0) and "(0.1, lowest wins)" in using(lowest)

    missing = model_project.mllib("predict", "--best", "f1", "--input", "{}")
    assert missing.returncode == 4
    assert "No version of Basic has an evaluation with the metric 'f1'" in missing.stderr
    assert "Their evaluations have: accuracy, loss." in missing.stderr


BAD = [
    (["--model", "Nope"], 4, "No model 'Nope' in this registry", "Models here: Basic (v1..v3)"),
    (["--model", "Basic:9"], 4, "No version 9 of model 'Basic'", "Versions of Basic: 1, 2, 3."),
    (["--model", "Basic@gold"], 4, "Model 'Basic' has no alias 'gold'", "It has none yet"),
    (["--model", "Basic:x"], 2, "the version after ':' must be a number", "iris:3"),
    (["--model", "Basic", "--epochs=3"], 2, "Params given with --model or --best", "Drop them"),
    (["--model", "Basic", "--run", "abcd"], 2, "give --run, or --model/--best", None),
    (["--model", "Basic:2", "--best", "loss"], 2, "give the model's name, not 'Basic:2'", None),
    (["model.py", "--model", "Other"], 2, "is the model 'Basic', but --model names 'Other'", None),
]


@pytest.mark.parametrize("args, code, message, hint", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_model_names_are_one_line_errors(model_project, versions, args, code, message, hint):
    for command in (["predict", *args, "--input", "{}"], ["evaluate", *args]):
        result = model_project.mllib(*command)
        assert result.returncode == code, result.output
        first, *rest = result.stderr.strip().splitlines()
        assert first.startswith("Error: ") and message in first, result.stderr
        assert "Traceback" not in result.stderr and len(rest) <= 1
        assert hint is None or hint in result.stderr
    assert len(model_project.mllib("runs", "list", "--json").json()) == 3  # nothing recorded


def test_an_alias_naming_a_missing_version_is_an_error(model_project, versions):
    refused = model_project.mllib("models", "alias", "Basic:7", "champion")
    assert refused.returncode == 4 and "No version 7 of model 'Basic'" in refused.stderr
    for bad in ("latest", "9lives", "a b"):
        named = model_project.mllib("models", "alias", "Basic:1", bad)
        assert named.returncode == 2 and "Error: " in named.stderr, named.output
    assert model_project.mllib("models", "alias", "Basic:3", "champion").returncode == 0
    # A registry that lost the version (a damaged file, a row removed by hand).
    with sqlite3.connect(model_project.root / ".mllib" / "registry.db") as db:
        db.execute("DELETE FROM models WHERE version = 3")
    dangling = model_project.mllib("predict", "--model", "Basic@champion", "-i", "{}")
    assert dangling.returncode == 4
    assert "Basic@champion names version 3, which is not in this registry" in dangling.stderr
    removed = model_project.mllib("models", "alias", "--rm", "Basic", "champion")
    assert removed.returncode == 0, removed.output
    assert model_project.mllib("models", "alias", "--rm", "Basic@champion").returncode == 4


def test_models_list_and_show_versions_runs_evaluations_and_aliases(model_project, versions):
    assert model_project.mllib("models", "alias", "Basic:2", "champion").returncode == 0
    listed = model_project.mllib("models", "list", "--json").json()
    assert listed == [
        {
            "name": "Basic",
            "versions": 3,
            "latest_version": 3,
            "latest_run_id": versions[3],
            "created_at": listed[0]["created_at"],
            "aliases": {"champion": 2},
            "deployed": {},
        }
    ]
    table = model_project.mllib("models", "list").stdout
    assert table.split("\n")[0].split() == [
        "MODEL", "VERSIONS", "LATEST", "CREATED", "ALIASES", "DEPLOYED"
    ]  # fmt: skip
    assert "Basic" in table and "champion=v2" in table

    shown = model_project.mllib("models", "show", "Basic", "--json").json()
    assert [v["version"] for v in shown["versions"]] == [3, 2, 1]
    assert [v["run_id"] for v in shown["versions"]] == [versions[3], versions[2], versions[1]]
    v2 = shown["versions"][1]
    assert v2["params"]["learning_rate"] == 0.5 and v2["ref"] == "Basic:2"
    assert v2["evaluation"] == {
        "run_id": versions[2],
        "eval_metrics": {"accuracy": 1.0, "loss": 0.5},
        "ended_at": v2["evaluation"]["ended_at"],
    }
    assert v2["evaluations"] == 1 and shown["versions"][0]["evaluation"] is None
    text = model_project.mllib("models", "show", "Basic").stdout
    assert "accuracy=1 loss=0.5" in text and "champion" in text and versions[1] in text

    one = model_project.mllib("models", "show", "Basic@champion", "--json").json()
    assert one["version"] == 2 and one["metrics"] == {"loss": 0.5, "weight": 1.0}
    detail = model_project.mllib("models", "show", "Basic:3").stdout
    assert "Basic v3" in detail and "learning_rate = 0.2" in detail
    assert "Not evaluated yet: mllib evaluate --model Basic:3" in detail
    assert model_project.mllib("models", "show", "Nope").returncode == 4


def test_no_version_yet_says_how_to_make_one(model_project):
    result = model_project.mllib("predict", "model.py", "--input", "{}")
    assert result.returncode == 4
    assert "No successful training run of Basic yet" in result.stderr
    assert "mllib train model.py" in result.stderr
    empty = model_project.mllib("models", "list")
    assert empty.returncode == 0 and "No trained models yet" in empty.stderr

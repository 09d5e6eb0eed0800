"""`--json` on the commands that produce a result (README, "JSON output"), with the real `mllib`:
train, evaluate and rerun answer with the run as `runs show --json` prints it (the run's own
output on stderr, so stdout parses), detached runs too, and `keys create` with its key once."""

from __future__ import annotations

import json

from tests.conftest import Project

MODEL = """
import mllib

class Shout:
    def __init__(self):
        self.lr = mllib.Param(0.1)

    def train(self):
        print("training output, not JSON")
        mllib.log_metric("loss", 0.25)

    def evaluate(self):
        print("evaluation output")
        return {"acc": 0.75}

    def predict(self, request):
        return request
"""
RUN_KEYS = {"id", "status", "model", "action", "params", "metrics", "eval_metrics", "error",
            "failure_class", "model_version", "created_at", "runtime", "seed"}  # fmt: skip


def answer(result) -> dict:
    assert result.returncode == 0, result.output
    return json.loads(result.stdout)


def test_train_evaluate_and_rerun_answer_with_the_run(project: Project):
    project.write("model.py", MODEL)
    project.write("mllib.toml", '[runtime]\nlocal = "process"\n')
    trained = answer(project.mllib("train", "model.py", "--lr=0.5", "--json"))
    assert set(trained) >= RUN_KEYS
    assert (trained["status"], trained["action"], trained["metrics"]) == ("succeeded", "train", {"loss": 0.25})  # fmt: skip
    assert trained["params"]["lr"] == 0.5 and trained["model_version"] == 1
    assert trained == project.mllib("runs", "show", trained["id"], "--json").json()
    evaluated = answer(project.mllib("evaluate", "--run", trained["id"], "--json"))
    assert evaluated["action"] == "evaluate" and evaluated["eval_metrics"] == {"acc": 0.75}
    again = answer(project.mllib("runs", "rerun", trained["id"], "--json"))
    assert again["rerun_of"] == trained["id"] and again["status"] == "succeeded"
    spelled = answer(project.mllib("model.py", "--train", "--evaluate", "--json"))
    assert spelled["action"] == "train+evaluate" and spelled["eval_metrics"] == {"acc": 0.75}
    failed = project.mllib("train", "model.py", "--lr=x", "--json")
    assert failed.returncode == 2 and failed.stdout == ""  # a usage error prints no JSON


def test_a_detached_run_answers_with_its_record_at_once(project: Project):
    project.write("model.py", MODEL)
    project.write("mllib.toml", '[runtime]\nlocal = "process"\n')
    started = answer(project.mllib("train", "model.py", "--detach", "--json"))
    assert set(started) >= RUN_KEYS and started["status"] in ("queued", "running", "succeeded")
    done = project.mllib("runs", "logs", started["id"], "--follow")
    assert done.returncode == 0 and "training output, not JSON" in done.stdout


def test_keys_create_answers_with_the_key_once(project: Project):
    project.write("mllib.toml", "")
    key = answer(project.mllib("keys", "create", "--env", "prod", "--rps", "5", "--json"))
    assert set(key) == {"id", "env", "token", "rps", "burst", "name", "admin"}
    assert key["token"].startswith("mlk_") and (key["env"], key["rps"]) == ("prod", 5.0)
    listed = project.mllib("keys", "list", "--json").json()
    assert [k["id"] for k in listed] == [key["id"]]
    assert key["token"] not in json.dumps(listed)  # only its hash is kept

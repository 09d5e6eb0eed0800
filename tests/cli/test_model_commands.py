"""`mllib train/evaluate` end to end through the real command: spellings, params, help, usage errors."""

import json
import socket
import zlib

from tests.conftest import Project


def test_train_records_params_metrics_artifacts_and_model(model_project: Project):
    result = model_project.mllib(
        "train", "model.py", "--learning_rate=0.5", "--epochs", "4", "--local"
    )
    assert result.returncode == 0, result.output
    run = model_project.last_run()
    assert run["status"] == "succeeded" and run["failure_class"] is None
    assert run["params"]["learning_rate"] == 0.5 and run["params"]["epochs"] == 4
    assert run["metrics"] == {"loss": 0.25, "weight": 2.0}
    assert run["metric_summary"]["loss"] == {
        "min": 0.25,
        "max": 1.0,
        "count": 4,
        "last": 0.25,
        "last_step": 3,
    }
    assert {a["path"] for a in run["artifacts"]} == {
        "model",
        "artifacts/notes.json",
        "artifacts/reports/summary.txt",
    }
    assert run["model_version"] == 1 and len(run["code_hash"]) == 64
    assert "params lr=0.5 epochs=4" in result.stdout  # the model's output streams to the terminal


def test_original_spelling_is_the_same_command(model_project: Project):
    result = model_project.mllib("model.py", "--train", "--learning_rate=0.25", "--local")
    assert result.returncode == 0, result.output
    run = model_project.last_run()
    assert run["action"] == "train" and run["params"]["learning_rate"] == 0.25
    result = model_project.mllib("model.py", "--evaluate", "--learning_rate=0.25")
    assert result.returncode == 0, result.output
    evaluation = model_project.last_run()
    assert evaluation["action"] == "evaluate" and evaluation["source_run_id"] == run["id"]
    assert evaluation["eval_metrics"] == {"accuracy": 0.75, "loss": 1 / 3}


def test_train_with_evaluate_is_one_run(model_project: Project):
    assert model_project.mllib("model.py", "--train", "--evaluate").returncode == 0
    runs = model_project.mllib("runs", "list", "--json").json()
    assert len(runs) == 1 and runs[0]["action"] == "train+evaluate"
    assert runs[0]["eval_metrics"]["accuracy"] == 0.3


def test_evaluate_uses_the_newest_training_run_with_the_same_params(model_project: Project):
    model_project.mllib("train", "model.py", "--epochs=2")
    model_project.mllib("train", "model.py", "--epochs=5")
    newer_two = model_project.mllib("train", "model.py", "--epochs=2")
    assert newer_two.returncode == 0
    two_id = model_project.last_run()["id"]
    assert model_project.mllib("evaluate", "model.py", "--epochs=2").returncode == 0
    assert model_project.last_run()["source_run_id"] == two_id
    missing = model_project.mllib("evaluate", "model.py", "--epochs=9")
    assert missing.returncode == 4
    assert (
        "No successful training run" in missing.stderr and "mllib train model.py" in missing.stderr
    )


def test_evaluate_a_given_run(model_project: Project):
    model_project.mllib("train", "model.py", "--epochs=2")
    first = model_project.last_run()["id"]
    model_project.mllib("train", "model.py", "--epochs=6")
    assert model_project.mllib("evaluate", "model.py", "--run", first[:6]).returncode == 0
    assert model_project.last_run()["source_run_id"] == first
    same = model_project.mllib("evaluate", "model.py", "--run", first, "--epochs=2")
    assert same.returncode == 0, same.output  # the params it was trained with: fine
    other = model_project.mllib("evaluate", "model.py", "--run", first, "--epochs=9")
    assert other.returncode == 2 and "was trained with epochs=2" in other.stderr
    predict = model_project.mllib("predict", "model.py", "--run", first, "--epochs=9", "-i", "{}")
    assert predict.returncode == 2 and "cannot change a trained model" in predict.stderr


def test_help_lists_the_models_params_without_running_it(model_project: Project):
    model_project.write(
        "model.py", "raise SystemExit('ran!')\n" + (model_project.root / "model.py").read_text()
    )
    result = model_project.mllib("train", "model.py", "--help")
    assert result.returncode == 0, result.output
    assert "ran!" not in result.output
    for text in (
        "--learning_rate",
        "float",
        "0.1",
        "--epochs",
        "int",
        "--layers",
        "list",
        "--data_path",
        "env DATA_PATH",
    ):
        assert text in result.stdout
    assert model_project.mllib("model.py", "--train", "--help").stdout == result.stdout


def test_unknown_param_and_bad_value_are_usage_errors(model_project: Project):
    unknown = model_project.mllib("train", "model.py", "--learning_rat=0.1")
    assert unknown.returncode == 2
    assert "Unknown param `learning_rat`" in unknown.stderr and "--learning_rate" in unknown.stderr
    bad = model_project.mllib("train", "model.py", "--epochs=three")
    assert bad.returncode == 2
    assert "`epochs`" in bad.stderr and "'three'" in bad.stderr and "int" in bad.stderr
    assert model_project.mllib("runs", "list", "--json").json() == []  # nothing half-recorded


def test_usage_errors_for_the_command_line_itself(model_project: Project):
    assert model_project.mllib("model.py").returncode == 2
    both = model_project.mllib("train", "model.py", "--local", "--remote")
    assert both.returncode == 2 and "--local" in both.stderr
    remote = model_project.mllib("train", "model.py", "--remote")
    assert remote.returncode == 2 and "No agents are configured" in remote.stderr
    assert "mllib agents add NAME --host HOST" in remote.stderr
    runtime = model_project.mllib("train", "model.py", "--runtime", "kubernetes")
    assert runtime.returncode == 2 and "Unknown runtime" in runtime.stderr


def test_model_discovery_errors(project: Project):
    project.write(
        "model.py",
        "class A:\n    def train(self): ...\n    def predict(self, r): ...\nclass B(object):\n    def train(self): ...\n    def predict(self, r): ...\n",
    )
    ambiguous = project.mllib("train", "model.py")
    assert ambiguous.returncode == 2 and "2 model classes (A, B)" in ambiguous.stderr
    project.write("mllib.toml", 'model = "model.py:B"\n')
    assert project.mllib("train", "model.py").returncode == 0
    assert project.last_run()["model"] == "B"
    assert project.mllib("train", "model.py:A").returncode == 0
    assert project.last_run()["model"] == "A"
    missing = project.mllib("train", "other.py")
    assert missing.returncode == 4 and "does not exist" in missing.stderr


def test_bad_mllib_toml_is_a_usage_error(model_project: Project):
    model_project.write("mllib.toml", "[runtime\n")
    result = model_project.mllib("train", "model.py")
    assert result.returncode == 2 and "not valid TOML" in result.stderr
    model_project.write("mllib.toml", "[paramz]\nx = 1\n")
    result = model_project.mllib("train", "model.py")
    assert result.returncode == 2 and "unknown key(s) paramz" in result.stderr
    # A typo inside a table is caught too, rather than silently running with the default.
    model_project.write("mllib.toml", '[runtime]\nlcoal = "process"\nmemory = "1g"\n')
    result = model_project.mllib("train", "model.py")
    assert result.returncode == 2 and "unknown key(s) in [runtime]: lcoal" in result.stderr
    assert "local" in result.stderr  # the known keys are listed
    # In a narrow terminal the message is one line for the terminal to wrap, not cut mid-list.
    narrow = model_project.mllib("train", "model.py", env={"COLUMNS": "30"})
    assert "unknown key(s) in [runtime]: lcoal" in narrow.stderr
    model_project.write("mllib.toml", "retry = 3\n")
    result = model_project.mllib("train", "model.py")
    assert result.returncode == 2 and "`retry` must be a table" in result.stderr
    (model_project.root / "mllib.toml").unlink()
    assert model_project.mllib("runs", "list", "--json").json() == []


def test_every_key_of_the_example_config_is_accepted():
    from pathlib import Path

    from mllib.config import load_config

    example = load_config(Path(__file__).resolve().parents[2] / "mllib.toml.example")
    assert example.get("runtime.local", "", str) == "auto"


def test_a_model_inheriting_from_another_project_file_trains_with_its_base_params(
    project: Project,
):
    project.write(
        "base.py",
        """
        import mllib

        class Base:
            def __init__(self):
                self.lr = mllib.Param(0.1)

            def train(self):
                mllib.log_metric("lr", self.lr)
        """,
    )
    project.write(
        "model.py",
        """
        import mllib
        from base import Base

        class Model(Base):
            def __init__(self):
                super().__init__()
                self.epochs = mllib.Param(3)

            def predict(self, request):
                return self.lr * self.epochs
        """,
    )
    result = project.mllib("train", "model.py", "--lr=0.5", "--runtime", "process")
    assert result.returncode == 0, result.output
    run = project.last_run()
    assert run["params"] == {"lr": 0.5, "epochs": 3} and run["metrics"] == {"lr": 0.5}
    help_text = project.mllib("train", "model.py", "--help").stdout
    assert "--lr" in help_text and "--epochs" in help_text
    evaluate = project.mllib("evaluate", "model.py", "--lr=0.5")
    assert evaluate.returncode == 2 and "has no evaluate() method" in evaluate.stderr
    assert len(project.mllib("runs", "list", "--json").json()) == 1  # the refusal recorded nothing


def test_a_library_base_without_train_fails_the_run_as_the_users_error(project: Project):
    """A base class from a library may bring train(): the run finds out; one that does not is
    the model's fault (user_error, the class named), not an internal error."""
    project.write(
        "model.py",
        """
        import json

        class Model(json.JSONEncoder):
            def predict(self, request):
                return request
        """,
    )
    result = project.mllib("train", "model.py:Model", "--runtime", "process")
    assert result.returncode == 1, result.output
    assert "internal error" not in result.output
    run = project.last_run()
    assert run["failure_class"] == "user_error" and "Model has no train() method" in run["error"]


def test_an_init_needing_arguments_is_a_usage_error_before_any_run(project: Project):
    project.write(
        "model.py",
        """
        class Model:
            def __init__(self, data_path):
                self.data_path = data_path
            def train(self): ...
            def predict(self, request): ...
        """,
    )
    result = project.mllib("train", "model.py", "--runtime", "process")
    assert result.returncode == 2
    assert "needs argument(s) data_path" in result.stderr and "mllib.Param" in result.stderr
    assert project.mllib("runs", "list", "--json").json() == []


def test_a_param_named_like_an_option_is_set_with_p_and_the_option_says_so(project: Project):
    project.write(
        "model.py",
        """
        import mllib

        class Model:
            def __init__(self):
                self.seed = mllib.Param(7)
            def train(self):
                print("model seed", self.seed)
            def predict(self, request): ...
        """,
    )
    option = project.mllib("train", "model.py", "--seed=3", "--runtime", "process")
    assert option.returncode == 0, option.output
    assert "--seed is mllib's own option" in option.stderr and "-p seed=VALUE" in option.stderr
    run = project.last_run()
    assert run["seed"] == 3 and run["params"] == {"seed": 7}
    param = project.mllib("train", "model.py", "-p", "seed=5", "--runtime", "process")
    assert param.returncode == 0 and "own option" not in param.stderr
    assert project.last_run()["params"] == {"seed": 5} and "model seed 5" in param.stdout
    help_text = project.mllib("train", "model.py", "--help").stdout
    assert "set the param `seed` with -p seed=VALUE" in help_text


WHERE_MODEL = """
import socket
import zlib


class Where:
    def train(self):
        pass

    def evaluate(self):  # a container has a host name of its own
        return {"host": float(zlib.crc32(socket.gethostname().encode()))}

    def predict(self, request):
        return {"host": socket.gethostname()}
"""


def test_evaluate_and_predict_run_where_the_training_run_ran(project: Project):
    project.write("model.py", WHERE_MODEL)
    # What a fresh run would pick; the training run is asked to run as a process instead.
    project.write("mllib.toml", '[runtime]\nlocal = "docker"\n')
    trained = project.mllib("train", "model.py", "--runtime", "process")
    assert trained.returncode == 0, trained.output
    run_id = project.last_run()["id"]

    evaluated = project.mllib("evaluate", "model.py")
    assert evaluated.returncode == 0, evaluated.output
    assert f"process runtime (as training run {run_id})" in evaluated.stderr
    evaluation = project.last_run()
    assert evaluation["runtime"] == "process" and evaluation["source_run_id"] == run_id
    assert evaluation["eval_metrics"] == {"host": zlib.crc32(socket.gethostname().encode())}

    predicted = project.mllib("predict", "model.py", "--input", "{}")
    assert predicted.returncode == 0, predicted.output
    assert json.loads(predicted.stdout) == {"host": socket.gethostname()}
    assert "docker build" not in predicted.output.lower()


def test_an_evaluation_method_named_test_works_as_evaluate(project: Project):
    project.write(
        "model.py",
        """
        import mllib


        class Seed:
            def __init__(self):
                self.k = mllib.Param(2)

            def train(self):
                self.w = self.k * 3

            def test(self):
                return {"w": self.w}

            def predict(self, request):
                return self.w
        """,
    )

    trained = project.mllib("train", "model.py", "--evaluate")
    evaluated = project.mllib("evaluate", "model.py")

    assert trained.returncode == 0 and evaluated.returncode == 0, trained.output + evaluated.output
    runs = project.mllib("runs", "list", "--json").json()
    assert [(r["action"], r["eval_metrics"]) for r in runs] == [
        ("evaluate", {"w": 6.0}),
        ("train+evaluate", {"w": 6.0}),
    ]

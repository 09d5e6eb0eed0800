"""Where a run's params come from: command line > env variable > env file > mllib.toml > default."""

from tests.conftest import Project


def test_each_source_in_order(model_project: Project):
    model_project.write(
        "mllib.toml", "[params]\nepochs = 2\nname = 'from-toml'\ndata_path = 'toml.csv'\n"
    )
    model_project.write(".env.local", "DATA_PATH=envfile.csv\n")
    assert model_project.mllib("train", "model.py", "--name=from-cli").returncode == 0
    run = model_project.last_run()
    assert run["params"]["name"] == "from-cli"  # cli beats toml
    assert run["params"]["data_path"] == "envfile.csv"  # env file beats toml
    assert run["params"]["epochs"] == 2  # toml beats default
    assert run["params"]["learning_rate"] == 0.1  # default

    assert (
        model_project.mllib("train", "model.py", env={"DATA_PATH": "real-env.csv"}).returncode == 0
    )
    assert (
        model_project.last_run()["params"]["data_path"] == "real-env.csv"
    )  # the real env beats the file
    assert (
        model_project.mllib(
            "train", "model.py", "--data_path=cli.csv", env={"DATA_PATH": "x"}
        ).returncode
        == 0
    )
    assert model_project.last_run()["params"]["data_path"] == "cli.csv"


def test_values_arrive_in_the_model_with_their_types(model_project: Project):
    result = model_project.mllib(
        "train", "model.py", "--shuffle=no", "--layers=[3, 2]", "--learning_rate=1"
    )
    assert result.returncode == 0, result.output
    assert "lr=1.0 epochs=3 shuffle=False name='base' layers=[3, 2]" in result.stdout


def test_the_env_file_is_read_for_local_runs_and_never_stored(model_project: Project):
    model_project.write(".env.local", "DATA_PATH=secret-path.csv\nAPI_TOKEN=s3cr3t\n")
    assert model_project.mllib("train", "model.py").returncode == 0
    run = model_project.last_run()
    assert run["params"]["data_path"] == "secret-path.csv"
    registry = (model_project.root / ".mllib" / "registry.db").read_bytes()
    assert b"s3cr3t" not in registry
    store = model_project.root / ".mllib" / "store" / "objects"
    assert not any(b"s3cr3t" in p.read_bytes() for p in store.rglob("*") if p.is_file())

"""The conventions every command shares (README, "Conventions"), tried with the real `mllib`:
`-h` wherever `--help` works, `-V`, `-q`/`-v`, options from MLLIB_... variables, shell completion,
and the closest name suggested for a mistyped command, option or param."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mllib._version import __version__
from tests.conftest import Project, run_cli

PROCESS = '[runtime]\nlocal = "process"\n'


@pytest.fixture
def trained(model_project: Project) -> Project:
    """The basic model with one training run, in the process runtime (fast, no engine needed)."""
    model_project.write("mllib.toml", PROCESS)
    result = model_project.mllib("train", "model.py")
    assert result.returncode == 0, result.output
    return model_project


def help_options() -> dict[tuple[str, ...], set[str]]:
    """Every command and group, as the words that run it -> the spellings of its help option."""
    import typer

    from mllib.cli.app import HELP_OPTIONS, command

    found: dict[tuple[str, ...], set[str]] = {}

    def walk(cmd, path: tuple[str, ...]) -> None:
        ctx = typer.Context(cmd, help_option_names=HELP_OPTIONS)
        own = [p for p in cmd.get_params(ctx) if "--help" in p.opts]
        found[path] = {o for p in own for o in p.opts + p.secondary_opts}
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, (*path, name))

    walk(command(), ())
    return found


def test_dash_h_works_wherever_dash_dash_help_does(tmp_path):
    commands = help_options()
    assert all(spellings == {"--help", "-h"} for spellings in commands.values()), commands
    # Tried for real: the root, every group, and the first command of each.
    groups = [p for p in commands if any(q[:-1] == p for q in commands if q)]
    firsts = [next(q for q in commands if q[:-1] == g) for g in groups]
    for path in [*groups, *firsts, ("train",), ("deploy", "x")]:
        short, long = run_cli([*path, "-h"], tmp_path), run_cli([*path, "--help"], tmp_path)
        assert short.returncode == long.returncode == 0, (path, short.output)
        assert "Usage" in short.stdout and short.stdout == long.stdout, path


def test_dash_capital_v_prints_the_version(tmp_path):
    assert run_cli(["-V"], tmp_path).stdout == f"mllib {__version__}\n"


def test_quiet_leaves_the_result_and_drops_headers_and_notes(project: Project):
    project.write("mllib.toml", PROCESS)
    project.write(
        "model.py",
        """
        import mllib

        class Model:
            def __init__(self):
                self.hf_token = mllib.Param("", env="HF_TOKEN")
            def train(self):
                print("the model's own output")
            def predict(self, request):
                return request
        """,
    )
    normal = project.mllib("train", "model.py", "--hf_token=abc")
    quiet = project.mllib("-q", "train", "model.py", "--hf_token=abc")
    assert normal.returncode == quiet.returncode == 0
    for shown in ("· train · process runtime", "Note: `hf_token` is a secret param"):
        assert shown in normal.stderr and shown not in quiet.stderr
    assert "succeeded" in quiet.stderr  # the outcome is what `train` answers
    assert "the model's own output" in quiet.stdout  # the model's output is not mllib's
    # The original spelling takes the root's flags too.
    original = project.mllib("-q", "model.py", "--train")
    assert original.returncode == 0 and "process runtime" not in original.stderr
    # MLLIB_QUIET is the same switch (and what processes mllib starts inherit).
    env_quiet = project.mllib("train", "model.py", env={"MLLIB_QUIET": "1"})
    assert env_quiet.returncode == 0 and "process runtime" not in env_quiet.stderr


def test_verbose_shows_debug_detail_and_the_traceback_of_an_error(trained: Project):
    result = trained.mllib("-v", "runs", "show", "nosuchrun")
    assert result.returncode == 4
    assert "debug: mllib: mllib " in result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-2] == "Error: No run 'nosuchrun' in this registry"
    plain = trained.mllib("runs", "show", "nosuchrun")
    assert "Traceback" not in plain.stderr and "debug:" not in plain.stderr
    both = trained.mllib("-q", "-v", "runs", "list")
    assert both.returncode == 2 and "cannot be used together" in both.stderr


def test_options_come_from_mllib_variables_below_the_command_line(trained: Project):
    trained.mllib("train", "model.py", "--epochs=1")
    one = trained.mllib("runs", "list", "--json", env={"MLLIB_RUNS_LIST_LIMIT": "1"})
    assert len(one.json()) == 1
    cli_wins = trained.mllib(
        "runs", "list", "--json", "--limit", "2", env={"MLLIB_RUNS_LIST_LIMIT": "1"}
    )
    assert len(cli_wins.json()) == 2
    as_json = trained.mllib("runs", "list", env={"MLLIB_RUNS_LIST_JSON": "true"})
    assert as_json.json()[0]["status"] == "succeeded"
    bad = trained.mllib("runs", "list", env={"MLLIB_RUNS_LIST_LIMIT": "many"})
    assert bad.returncode == 2 and "--limit got 'many': allowed is a whole number" in bad.stderr
    helptext = trained.mllib("runs", "list", "--help").stdout
    assert "MLLIB_RUNS_LIST_LIMIT" in helptext and "MLLIB_RUNS_LIST_JSON" in helptext
    deploy_help = trained.mllib("deploy", "x", "--help").stdout
    assert "MLLIB_DEPLOY_ENV" in deploy_help  # `mllib deploy MODEL` reads its group's names
    tune_help = trained.mllib("tune", "model.py", "--help").stdout
    assert "MLLIB_TUNE_TRIALS" in tune_help  # and `mllib tune MODEL` its group's


def test_the_command_line_wins_over_the_environment_over_mllib_toml(trained: Project):
    trained.write("mllib.toml", "seed = 5\n" + PROCESS)

    def seed_of(*args: str, env: dict[str, str] | None = None) -> int:
        assert trained.mllib("train", "model.py", *args, env=env).returncode == 0
        return trained.last_run()["seed"]

    assert seed_of() == 5
    assert seed_of(env={"MLLIB_TRAIN_SEED": "7"}) == 7
    assert seed_of("--seed", "9", env={"MLLIB_TRAIN_SEED": "7"}) == 9


def test_options_that_act_and_exit_never_come_from_the_environment(trained: Project):
    env = {"MLLIB_VERSION": "1", "MLLIB_HELP": "1", "MLLIB_RUNS_LIST_HELP": "1"}
    result = trained.mllib("runs", "list", "--json", env=env)
    assert result.returncode == 0 and len(result.json()) == 1


def _bash_completion(cwd: Path, words: list[str], home: Path) -> list[str]:
    """What Tab offers after `words` in a real bash with mllib's completion script loaded."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(home)}
    env["SHELL"] = "/bin/bash"
    script = subprocess.run(
        ["mllib", "--show-completion"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "complete" in script
    quoted = " ".join(f"'{w}'" for w in words)
    probe = (
        f"{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
        "_mllib_completion mllib\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    shell = subprocess.run(
        ["bash", "-c", probe], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert shell.returncode == 0, shell.stderr
    return [line for line in shell.stdout.splitlines() if line]


def test_shell_completion_offers_commands_options_runs_models_and_environments(
    trained: Project, tmp_path
):
    run_id = trained.last_run()["id"]
    home = tmp_path / "home"
    home.mkdir()
    assert _bash_completion(trained.root, ["mllib", "ru"], home) == ["runs", "runtime"]
    assert "--limit" in _bash_completion(trained.root, ["mllib", "runs", "list", "--l"], home)
    assert _bash_completion(trained.root, ["mllib", "runs", "show", run_id[:3]], home) == [run_id]
    assert run_id in _bash_completion(
        trained.root, ["mllib", "predict", "model.py", "--run", ""], home
    )
    assert _bash_completion(trained.root, ["mllib", "deploy", "status", "--env", ""], home) == [
        "staging",
        "prod",
    ]
    model = trained.last_run()["model"]
    assert model in _bash_completion(trained.root, ["mllib", "deploy", model[:2]], home)
    # In a folder with no project, run ids complete to nothing, and nothing is created.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _bash_completion(empty, ["mllib", "runs", "show", ""], home) == []
    assert list(empty.iterdir()) == []


def test_install_completion_writes_the_script_for_the_users_shell(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    result = run_cli(
        ["--install-completion"], tmp_path, env={"HOME": str(home), "SHELL": "/bin/bash"}
    )
    assert result.returncode == 0, result.output
    assert "_mllib_completion" in "".join(p.read_text() for p in home.rglob("*") if p.is_file())


def test_a_mistyped_command_or_option_suggests_the_closest_name(trained: Project):
    command = trained.mllib("trian", "model.py")
    assert command.returncode == 2 and "Did you mean 'train'?" in command.stderr
    sub = trained.mllib("runs", "lsit")
    assert sub.returncode == 2 and "Did you mean 'list'?" in sub.stderr
    option = trained.mllib("runs", "list", "--limt", "3")
    assert option.returncode == 2
    assert "Error: No such option --limt: did you mean --limit?" in option.stderr
    assert "Usage: mllib runs list" in option.stderr


def test_a_mistyped_option_or_param_of_a_model_command_suggests_the_closest_name(
    trained: Project,
):
    option = trained.mllib("train", "model.py", "--detatch")
    assert option.returncode == 2 and "(did you mean --detach?)" in option.stderr
    param = trained.mllib("train", "model.py", "--learning_rat=0.2")
    assert param.returncode == 2 and "(did you mean --learning_rate?)" in param.stderr
    assert trained.mllib("runs", "list", "--json").json()[0]["params"]["learning_rate"] == 0.1
    trained.write("mllib.toml", PROCESS + "[params]\nepoch = 2\n")
    config = trained.mllib("train", "model.py")
    assert config.returncode == 2
    assert "`epoch` (did you mean epochs?) in [params] of mllib.toml" in config.stderr


READ_ONLY = (
    ("runs", "list"), ("runs", "list", "--json"), ("models", "list"), ("tune", "list"),
    ("deploy", "status"), ("deploy", "history"), ("keys", "list"),
)  # fmt: skip


def test_read_only_commands_outside_a_project_say_so_and_create_nothing(tmp_path):
    for args in READ_ONLY:
        result = run_cli(list(args), tmp_path)
        assert result.returncode == 0, (args, result.output)
        assert f"No mllib project in {tmp_path} or above" in result.stderr, args
    assert list(tmp_path.iterdir()) == []  # no .mllib/, no registry.db


def test_read_only_commands_in_a_project_not_yet_run_create_nothing(project: Project):
    project.write("mllib.toml", PROCESS)
    before = sorted(p.name for p in project.root.iterdir())
    for args in READ_ONLY:
        result = project.mllib(*args)
        assert result.returncode == 0, (args, result.output)
        assert "No mllib project" not in result.stderr  # mllib.toml is here
    assert sorted(p.name for p in project.root.iterdir()) == before

"""`mllib --help` (and group helps) must not import heavy libraries: the CLI stays fast to start."""

import json
import subprocess
import sys

import pytest

HEAVY = [
    "torch",
    "docker",
    "paramiko",
    "litserve",
    "textual",
    "sqlite_utils",
    "numpy",
    "pandas",
    "sklearn",
    "httpx",
    "fastapi",
    "uvicorn",
    "prometheus_client",
    "cloudpickle",
    "plotext",
    "psutil",
    "optuna",
    "sqlalchemy",
    "ray",  # an optional extra, installed in the test venv: imported only by Ray runs
    "sentry_sdk",
]
PROBE = """
import json, sys
from mllib.cli import main
sys.argv = ["mllib", *json.loads(sys.argv[1])]
code = main()
print("\\nMODULES=" + json.dumps(sorted(sys.modules)))
"""


def _probe(args: list[str], cwd) -> tuple[str, set[str]]:
    """What `mllib ARGS`, run in `cwd`, printed and the top-level modules it loaded."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("MODULES=")), None)
    assert line, result.stdout + result.stderr
    return result.stdout, {m.split(".")[0] for m in json.loads(line.removeprefix("MODULES="))}


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["runs", "--help"],
        ["train", "--help"],
        [],
        ["deploy", "--help"],
        ["tune", "--help"],
        ["keys", "--help"],
        ["dashboard", "--help"],
        ["dash", "--help"],
        ["ray", "--help"],
    ],
)
def test_help_imports_no_heavy_module(args, tmp_path):
    printed, loaded = _probe(args, tmp_path)
    assert "Usage" in printed
    assert sorted(loaded & set(HEAVY)) == []


def test_running_a_command_does_not_import_pydantic(tmp_path):
    # typer 0.29 imports pydantic whenever a command runs (about 120 ms of `mllib runs list`
    # here): pyproject.toml keeps typer below it.
    _, loaded = _probe(["runs", "list"], tmp_path)
    assert "pydantic" not in loaded


def test_version_flag_prints_the_version(tmp_path):
    from mllib._version import __version__
    from tests.conftest import run_cli

    result = run_cli(["--version"], tmp_path)
    assert result.returncode == 0 and result.stdout == f"mllib {__version__}\n"

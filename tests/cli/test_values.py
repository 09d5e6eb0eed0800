"""Every number a user gives (options, params, mllib.toml) is range-checked where it is parsed: a
usage error (exit 2) naming the value and the allowed range, with nothing recorded first; and
other bad input (mllib.toml that is not UTF-8 or not a file, an endless `--input`) the same."""

from __future__ import annotations

import sqlite3

import pytest

from tests.cli.commands import commands, options
from tests.conftest import Project

# What each command with a numeric option needs besides it. A new command with a numeric option
# fails test_every_numeric_option_is_range_checked until it is listed here.
NEEDS = {
    "train": ["model.py"],
    "serve": ["model.py"],
    "loadtest": ["--env", "staging"],
    "runs list": [],
    "deploy ship": ["m:1", "--env", "staging"],
    "deploy status": [],
    "deploy history": [],
    "deploy logs": ["--env", "staging"],
    "keys create": ["--env", "staging"],
    "tune study": ["model.py", "--param", "x=uniform:0:1", "--metric", "loss"],
    "tune resume": ["study"],
    "server init": ["--dir", "srv"],
    "server start": ["--dir", "srv"],
    "server users add": ["u", "--dir", "srv"],
    "server users token": ["u", "--dir", "srv"],
    "server agents add": ["gpu9", "--host", "10.0.0.9"],
    "agents add": ["gpu9", "--host", "10.0.0.9"],
    "agents prune": ["gpu9"],
    "data upload": ["data.csv", "--name", "d"],
    "dashboard": [],
    "dash": [],
}


def numeric_options() -> list[tuple[str, str, object]]:
    found = []
    for path, callback in commands():
        for name, kind, info in options(callback):
            if kind in (int, float):
                found.append((path, name, info))
    return found


def test_every_numeric_option_is_range_checked():
    """No bare int or float option: each goes through mllib.cli.numbers (one place)."""
    found = numeric_options()
    assert len(found) >= 15
    for path, name, info in found:
        assert getattr(info.parser, "allowed", None) is not None, f"{path} {name} is unchecked"
        assert info.parser.option == name
        assert path in NEEDS, f"add `{path}` to NEEDS"


def outside(allowed) -> list[str]:
    """Values outside `allowed`: NaN, infinities, not a number, below its low end, above its
    high end (a huge one for a bounded range)."""
    values = ["nan", "inf", "-inf", "abc"]
    if allowed.high is not None:
        values.append("1" + "0" * 30)
    if allowed.low is not None:
        values.append(str(allowed.low - 1) if allowed.integer else str(allowed.low - 0.5))
    if allowed.high is not None:
        values.append(str(int(allowed.high) + 1))
    if allowed.integer:
        values.append("1.5")
    return values


def table_counts(project: Project) -> dict[str, int]:
    path = project.root / ".mllib" / "registry.db"
    if not path.exists():
        return {}
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: conn.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0] for n in names}


@pytest.mark.parametrize(("path", "name"), [(p, n) for p, n, _ in numeric_options()])
def test_a_number_outside_its_range_is_a_usage_error_recording_nothing(
    model_project: Project, path: str, name: str
):
    model_project.write("data.csv", "a\n1\n")
    assert model_project.mllib("runs", "list").returncode == 0  # a registry to compare with
    before = table_counts(model_project)
    info = next(i for p, n, i in numeric_options() if (p, n) == (path, name))
    for value in outside(info.parser.allowed):
        result = model_project.mllib(*path.split(), *NEEDS[path], f"{name}={value}")
        assert result.returncode == 2, (path, name, value, result.output)
        assert f"Error: {name} got " in result.stderr, result.stderr
        assert (
            ": allowed is " in result.stderr
        )  # the option's range, or a narrower one of mllib.toml
        assert "Traceback" not in result.output
    assert table_counts(model_project) == before
    assert not (model_project.root / ".mllib" / "runs").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["loadtest", "--env", "staging", "--rate", "nan"],
            "--rate got 'nan': allowed is a number greater than 0",
        ),
        (["loadtest", "--env", "staging", "--rate", "50:inf"], "--rate got 'inf': allowed is"),
        (["loadtest", "--env", "staging", "--rate", "-inf:50"], "--rate got '-inf': allowed is"),
        (
            ["loadtest", "--env", "staging", "--duration", "nan"],
            "--duration got 'nan': allowed is a number greater",
        ),
        (
            ["loadtest", "--env", "staging", "--duration", "infs"],
            "--duration got 'infs': allowed is",
        ),
        (
            ["loadtest", "--env", "staging", "--duration", "1e308h"],
            "--duration got '1e308h': allowed is",
        ),
        (["loadtest", "--env", "staging", "--duration", "0"], "--duration got '0': allowed is"),
        (
            ["deploy", "promote", "--env", "staging", "--interval", "nanm"],
            "--interval got 'nanm': allowed is",
        ),
        (
            ["deploy", "promote", "--env", "staging", "--interval", "-1s"],
            "--interval got '-1s': allowed is",
        ),
        (
            ["deploy", "promote", "--env", "staging", "--steps", "10,nan"],
            "--steps must rise from above 0 to 100",
        ),
        (
            ["deploy", "promote", "--env", "staging", "--steps", "inf"],
            "--steps must rise from above 0 to 100",
        ),
        (["tune", "model.py", "--metric", "m", "--timeout", "9" * 400], "--timeout got '999"),
    ],
)
def test_durations_rates_and_steps_refuse_nan_and_infinities(
    model_project: Project, args: list[str], message: str
):
    """The options parsed from text (`30s`, `50:1500`, `10,50,100`) go through mllib.ranges too:
    NaN and infinities are usage errors, never a load test or promotion that runs forever."""
    assert model_project.mllib("runs", "list").returncode == 0
    before = table_counts(model_project)
    result = model_project.mllib(*args)
    assert result.returncode == 2, (args, result.output)
    assert message in result.stderr and "Traceback" not in result.output
    assert table_counts(model_project) == before


def test_the_range_is_in_the_help(model_project: Project):
    shown = model_project.mllib("runs", "list", "--help")
    assert "Allowed: a whole number from 1 to" in shown.stdout


@pytest.mark.parametrize(
    ("args", "env", "toml", "message"),
    [
        (["--epochs=100000000000000000000000000000"], {}, "", "Param `epochs` got 100000…"),
        (["--learning_rate=nan"], {}, "", "Param `learning_rate` got nan on the command line"),
        (["--learning_rate=-inf"], {}, "", "allowed is a finite number"),
        (["--layers=[1, 1e999]"], {}, "", "Param `layers` got inf"),
        ([], {"DATA_PATH": "x"}, "[params]\nlearning_rate = nan\n", "in [params] of mllib.toml"),
        ([], {}, "seed = -1\n", "`seed` got -1: allowed is a whole number from 0 to 4294967295"),
        ([], {}, "[runtime]\ncancel_grace_s = inf\n", "`runtime.cancel_grace_s` got inf"),
    ],
)
def test_params_and_mllib_toml_numbers_are_range_checked_before_a_run_is_recorded(
    model_project: Project, args, env, toml, message
):
    if toml:
        model_project.write("mllib.toml", toml)
    result = model_project.mllib("train", "model.py", *args, env=env)
    assert result.returncode == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not (model_project.root / ".mllib" / "runs").exists()


def test_an_int_param_from_the_environment_is_range_checked(project: Project):
    project.write(
        "model.py",
        """
        import mllib

        class M:
            def __init__(self):
                self.batch = mllib.Param(32, env="BATCH")

            def train(self):
                pass

            def predict(self, request):
                return self.batch
        """,
    )
    result = project.mllib("train", "model.py", env={"BATCH": str(2**64)})
    assert result.returncode == 2, result.output
    assert "Param `batch` got 18446744073709551616 from the environment variable BATCH" in (
        result.stderr
    )


@pytest.mark.parametrize("case", ["not utf-8", "a folder"])
def test_an_unreadable_mllib_toml_is_a_usage_error(model_project: Project, case: str):
    path = model_project.root / "mllib.toml"
    if case == "not utf-8":
        path.write_bytes(b'name = "caf\xe9"\n')
        message = "mllib.toml is not UTF-8 text (byte 0xe9 at offset 11)"
    else:
        path.mkdir()
        message = "mllib.toml is not a file"
    for args in (("runs", "list"), ("train", "model.py")):
        result = model_project.mllib(*args)
        assert result.returncode == 2, result.output
        assert message in result.stderr and "Traceback" not in result.output


def test_an_endless_input_is_capped_with_a_clear_error(model_project: Project):
    model_project.write("mllib.toml", '[runtime]\nlocal = "process"\n[serve]\nmax_body_mb = 1\n')
    assert model_project.mllib("train", "model.py").returncode == 0
    for args in (
        ("predict", "model.py", "--input", "@/dev/zero"),
        ("loadtest", "--env", "staging", "--input", "@/dev/zero"),
    ):
        result = model_project.mllib(*args, timeout=60)  # it used to read until MemoryError
        assert result.returncode == 2, result.output
        assert "The request from /dev/zero is larger than 1 MB" in result.stderr
        assert "[serve] max_body_mb" in result.stderr
    piped = model_project.mllib("predict", "model.py", "--input", "-", input='{"x": 2}')
    assert piped.returncode == 0 and piped.stdout.strip() == '{"y":0.6000000000000001}'


@pytest.mark.parametrize("version", ["99999999999999999999999", "0", "²"])
def test_a_model_version_out_of_range_is_a_usage_error(model_project: Project, version: str):
    """`--model NAME:VERSION` and `mllib models show|alias`: a version past 64 bits was an
    OverflowError traceback from SQLite, a non-ASCII digit a ValueError."""
    ref = f"m:{version}"
    for args in (
        ("predict", "--model", ref, "--input", "{}"),
        ("models", "show", ref),
        ("models", "alias", ref, "best"),
    ):
        result = model_project.mllib(*args)
        assert result.returncode == 2, (args, result.output)
        assert repr(ref) in result.stderr and "Traceback" not in result.output

"""Param conversion, precedence and command-line parsing (the rules a user relies on)."""

import os

import pytest

import mllib
from mllib.errors import ParamError
from mllib.params import ParamSpec, convert, looks_secret, parse_cli_params, resolve

SPECS = {
    "lr": ParamSpec("lr", 0.1, "float"),
    "epochs": ParamSpec("epochs", 5, "int"),
    "shuffle": ParamSpec("shuffle", True, "bool"),
    "name": ParamSpec("name", "a", "str"),
    "layers": ParamSpec("layers", [1], "list"),
    "data": ParamSpec("data", "d.csv", "str", env="TRAIN_DATA"),
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("1", True),
        ("yes", True),
        ("Y", True),
        ("false", False),
        ("0", False),
        ("no", False),
    ],
)
def test_bool_accepts_common_spellings(raw, expected):
    assert convert("shuffle", raw, "bool") is expected


def test_values_convert_to_the_default_type():
    assert convert("lr", "1e-3", "float") == 0.001
    assert convert("epochs", "12", "int") == 12
    assert convert("layers", "[16, 8]", "list") == [16, 8]
    assert convert("cfg", '{"a": 1}', "dict") == {"a": 1}
    assert convert("lr", 3, "float") == 3.0 and isinstance(convert("lr", 3, "float"), float)


@pytest.mark.parametrize(
    ("raw", "type_name"),
    [("abc", "int"), ("1.5", "int"), ("maybe", "bool"), ("x", "float"), ("[1", "list")],
)
def test_a_bad_value_names_the_param_the_value_and_the_type(raw, type_name):
    with pytest.raises(ParamError) as info:
        convert("thing", raw, type_name)
    message = str(info.value)
    assert "`thing`" in message and repr(raw) in message and type_name in message


def test_precedence_cli_over_env_over_config_over_default():
    environ = {"TRAIN_DATA": "env.csv"}
    config = {"lr": 0.5, "epochs": 7, "data": "config.csv"}
    resolved = resolve(SPECS, {"lr": "0.01"}, environ=environ, config=config)
    assert resolved.values["lr"] == 0.01 and resolved.sources["lr"] == "cli"
    assert resolved.values["data"] == "env.csv" and resolved.sources["data"] == "env"
    assert resolved.values["epochs"] == 7 and resolved.sources["epochs"] == "config"
    assert resolved.values["shuffle"] is True and resolved.sources["shuffle"] == "default"
    assert resolve(SPECS, {"data": "cli.csv"}, environ=environ).values["data"] == "cli.csv"


def test_unknown_param_lists_declared_params_with_defaults_and_types():
    with pytest.raises(ParamError) as info:
        resolve(SPECS, {"learning_rate": "1"}, environ={})
    message = str(info.value)
    assert "learning_rate" in message
    for line in ("--lr", "float", "0.1", "--epochs", "int", "--data", "TRAIN_DATA"):
        assert line in message
    assert info.value.exit_code == 2


def test_unknown_key_in_config_params_is_reported_as_such():
    with pytest.raises(ParamError, match=r"in \[params\] of mllib.toml"):
        resolve(SPECS, {}, environ={}, config={"lrr": 1})


def test_command_line_forms():
    args = [
        "--lr=0.2",
        "--epochs",
        "3",
        "--no-shuffle",
        "--name=x=y",
        "-p",
        "layers=[2]",
        "--data-path-unused=1",
    ]
    parsed = parse_cli_params(args, SPECS)
    assert parsed == {
        "lr": "0.2",
        "epochs": "3",
        "shuffle": "false",
        "name": "x=y",
        "layers": "[2]",
        "data_path_unused": "1",
    }
    assert parse_cli_params(["--shuffle", "--lr=1"], SPECS)["shuffle"] == "true"


@pytest.mark.parametrize("args", [["stray"], ["--epochs"], ["-p", "novalue"]])
def test_malformed_command_line_is_a_usage_error(args):
    with pytest.raises(ParamError):
        parse_cli_params(args, SPECS)


class ReadsParamsTooEarly:
    def __init__(self, use):
        self.path = mllib.Param("data.csv")
        self.epochs = mllib.Param(3)
        self.flag = mllib.Param(False)
        use(self)


@pytest.mark.parametrize(
    "use",
    [
        lambda m: os.fspath(m.path),  # what open() calls first
        lambda m: range(m.epochs),
        lambda m: bool(m.flag),
        lambda m: m.epochs * 2,
        lambda m: float(m.epochs),
    ],
)
def test_a_param_used_as_a_value_in_init_says_why_it_is_not_resolved_yet(use):
    with pytest.raises(TypeError, match="before mllib resolved it") as info:
        ReadsParamsTooEarly(use)
    assert "not in __init__" in str(info.value) and "mllib.create" in str(info.value)


def test_create_resolves_params_so_the_instance_holds_plain_values():
    class Plain:
        def __init__(self):
            self.epochs = mllib.Param(3)
            self.flag = mllib.Param(False)

    model = mllib.create(Plain, epochs="4")
    assert model.epochs == 4 and model.flag is False and not model.flag


@pytest.mark.parametrize(
    "name",
    [
        *("HF_TOKEN", "hf_token", "GITHUB_TOKEN", "db_password", "db_passwd", "aws_secret"),
        *("OPENAI_API_KEY", "apikey", "ssh_private_key", "gcp_credentials", "key_passphrase"),
    ],
)
def test_credential_like_names_are_secret(name):
    assert looks_secret(name)


@pytest.mark.parametrize(
    "name",
    ["pad_token", "eos_token", "max_tokens", "tokenizer", "learning_rate", "sort_key", "keyword"],
)
def test_other_names_are_not_secret(name):
    assert not looks_secret(name)


def test_secret_is_declared_or_read_from_the_names_and_can_be_opted_out():
    specs = {
        "hf_token": ParamSpec.from_param("hf_token", mllib.Param("")),
        "db": ParamSpec.from_param("db", mllib.Param("", env="DB_PASSWORD")),
        "seed_phrase": ParamSpec.from_param("seed_phrase", mllib.Param("x", secret=True)),
        "note": ParamSpec.from_param("note", mllib.Param("n", env="NOTE_TOKEN", secret=False)),
    }
    resolved = resolve(specs, {"hf_token": "abc"}, environ={"DB_PASSWORD": "pw"}, config={})
    assert resolved.values == {"hf_token": "abc", "db": "pw", "seed_phrase": "x", "note": "n"}
    assert resolved.recorded == {"hf_token": "***", "db": "***", "seed_phrase": "***", "note": "n"}
    assert "abc" not in resolved.shown() and "pw" not in resolved.shown()
    assert repr(mllib.Param("s3cr3t", secret=True)) == "Param(***)"


def test_a_bad_value_says_where_it_came_from_without_repeating_a_secret(monkeypatch):
    specs = {
        "epochs": ParamSpec("epochs", 1, "int", env="EPOCHS"),
        "seed": ParamSpec("seed", 1, "int"),
        "db_password": ParamSpec("db_password", 1, "int", env="DB_PASSWORD"),
    }
    with pytest.raises(ParamError, match=r"got 'abc' in \[params\] of mllib\.toml"):
        resolve(specs, {}, environ={}, config={"seed": "abc"})
    with pytest.raises(ParamError, match="got 'x' from the environment variable EPOCHS"):
        resolve(specs, {}, environ={"EPOCHS": "x"}, config={})
    monkeypatch.delenv("EPOCHS", raising=False)
    with pytest.raises(ParamError, match=r"got 'y' from EPOCHS in \.env\.local"):
        resolve(specs, {}, environ={"EPOCHS": "y"}, config={}, env_file=".env.local")
    with pytest.raises(ParamError, match="got 'z' on the command line"):
        resolve(specs, {"seed": "z"}, environ={}, config={})
    with pytest.raises(ParamError) as info:
        resolve(specs, {}, environ={"DB_PASSWORD": "hunter2"}, config={})
    assert "hunter2" not in str(info.value) and "got a value from" in str(info.value)

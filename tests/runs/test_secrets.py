"""Secret params reach the model but never the registry, the run's files, the model artifact or
anything mllib prints; reruns and evaluations resolve them again from the environment."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from tests.conftest import Project, model_source, wait_for
from tests.runs.test_cancel import _gone
from tests.runs.test_ctrl_c import ctrl_c_during_train

# A secret with what dotenv would otherwise expand or unescape: $, ${...}, quotes, a backslash.
HF_TOKEN = 'hf_S3CR3T$x${HOME}"q\\b'
ENV_FILE = 'HF_TOKEN="hf_S3CR3T$x${HOME}\\"q\\\\b"\nNOTE_TOKEN=visible-note\n'
SECRETS = ("S3CR3T", "db-pw-S3CR3T", "cli-key-S3CR3T", "flavour-S3CR3T")


def digest(*values: str) -> str:
    return hashlib.sha256("|".join(values).encode()).hexdigest()


def everything_on_disk(project: Project) -> bytes:
    """Every file mllib keeps: registry (and its WAL), run folders, store objects."""
    files = [p for p in (project.root / ".mllib").rglob("*") if p.is_file()]
    return b"".join(p.read_bytes() for p in files)


def test_secret_params_reach_the_model_but_are_never_recorded_or_shown(project: Project):
    project.write("model.py", model_source("secrets"))
    project.write(".env.local", ENV_FILE)
    result = project.mllib(
        "train",
        "model.py",
        "--api_key=cli-key-S3CR3T",
        "--flavour=flavour-S3CR3T",
        "--runtime=process",
        env={"DB_PASSWORD": "db-pw-S3CR3T"},
    )
    assert result.returncode == 0, result.output
    want = digest(HF_TOKEN, "db-pw-S3CR3T", "cli-key-S3CR3T", "flavour-S3CR3T")
    assert f"train digest {want}" in result.stdout  # the model got every value, taken literally
    assert "shell's history" in result.stderr and "`api_key` is a secret" in result.stderr

    run = project.last_run()
    assert run["params"] == {
        "hf_token": "***",
        "db": "***",
        "api_key": "***",
        "flavour": "***",
        "pad_token": "[PAD]",
        "note": "visible-note",
        "epochs": 2,
    }
    project.mllib("train", "model.py", "--runtime=process", "--epochs=3")
    second = project.last_run()["id"]
    shown = [
        project.mllib("runs", "show", run["id"]).output,
        project.mllib("runs", "show", run["id"], "--json").output,
        project.mllib("runs", "compare", run["id"], second).output,
        project.mllib("runs", "compare", run["id"], second, "--json").output,
        project.mllib("runs", "list").output,
        project.mllib("train", "--help").output,
    ]
    for text in shown:
        assert not any(secret in text for secret in SECRETS), text
    help_text = shown[-1]
    assert "default-flavour" not in help_text and "(secret: not recorded)" in help_text
    assert "hf_token = ***" in shown[0]
    # Not in the registry, the events file, spec.json, the stored model or anywhere else.
    assert not any(s.encode() in everything_on_disk(project) for s in SECRETS[1:])
    assert b"hf_S3CR3T" not in everything_on_disk(project)
    run_dir = project.root / ".mllib" / "runs" / run["id"]
    assert not (run_dir / "secret_params.json").exists()  # the worker took it


def test_evaluate_and_rerun_resolve_secrets_again(project: Project):
    project.write("model.py", model_source("secrets"))
    project.write(".env.local", "HF_TOKEN=first\n")
    trained = project.mllib("train", "model.py", "--runtime=process", "--api_key=k1")
    assert trained.returncode == 0, trained.output
    train_id = project.last_run()["id"]

    # The newest training run "with the same params" does not depend on a secret's value, and
    # the loaded model gets its secrets from today's environment, not from the pickle.
    project.write(".env.local", "HF_TOKEN=second\n")
    evaluated = project.mllib("evaluate", "model.py")
    assert evaluated.returncode == 0, evaluated.output
    evaluation = project.last_run()
    assert evaluation["source_run_id"] == train_id and evaluation["params"]["hf_token"] == "***"
    assert f"evaluate digest {digest('second', '', '', 'default-flavour')}" in evaluated.stdout

    rerun = project.mllib("runs", "rerun", train_id)
    assert rerun.returncode == 0, rerun.output
    # hf_token from the env file as it is now; api_key (given on the command line, never
    # recorded) falls back to its default, and the user is told so. No "***" reaches the model.
    assert f"train digest {digest('second', '', '', 'default-flavour')}" in rerun.stdout
    assert "secret param api_key" in rerun.stderr and "not recorded" in rerun.stderr
    again = project.last_run()
    assert again["rerun_of"] == train_id and again["params"]["api_key"] == "***"


def test_project_state_is_private(project: Project):
    project.write("model.py", model_source("secrets"))
    state = project.root / ".mllib"
    state.mkdir(mode=0o755)  # as an older mllib (or the umask) left it
    state.chmod(0o755)
    assert project.mllib("train", "model.py", "--runtime=process").returncode == 0
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in ("registry.db", "registry.db-wal"):
        path = state / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name


def test_a_new_registry_is_private_wherever_it_is(tmp_path: Path):
    from mllib.registry import Registry

    path = tmp_path / "shared" / "registry.db"
    Registry.open(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize("moment", ["header", "supervisor-started"])
def test_a_secret_from_the_command_line_does_not_outlive_a_run_cancelled_before_it_started(
    project: Project, moment: str
):
    """A real SIGINT while the header prints, or just after `--detach` started its background
    supervisor (tests/runs/test_ctrl_c.py)."""
    project.write("model.py", model_source("secrets"))
    seen = ctrl_c_during_train(project, moment, {"api_key": "cli-key-S3CR3T"})
    if "supervisor" in seen:
        wait_for(lambda: _gone(seen["supervisor"]), timeout=30, what="the supervisor to exit")

    assert project.show(seen["run"])["status"] == "cancelled"
    assert not (project.root / ".mllib" / "runs" / seen["run"] / "secret_params.json").exists()
    assert b"cli-key-S3CR3T" not in everything_on_disk(project)


LEAKY = """
import sys

import mllib


class Leaky:
    def __init__(self):
        self.hf_token = mllib.Param("", env="HF_TOKEN")
        self.api_key = mllib.Param("")
        self.epochs = mllib.Param(1)

    def train(self):
        sys.stdout.write("token " + self.hf_token[:6])  # one value cut across two writes
        sys.stdout.flush()
        sys.stdout.write(self.hf_token[6:] + "\\n")
        print("key", self.api_key, flush=True)
        raise ValueError(f"401 for token {self.hf_token!r} and key {self.api_key}")

    def predict(self, request):
        return request
"""


@pytest.mark.parametrize("detach", [False, True])
def test_a_secret_inside_an_exception_or_the_output_is_never_stored_or_printed(
    project: Project, detach: bool
):
    project.write("model.py", LEAKY)
    project.write(".env.local", "HF_TOKEN=hf_TOKEN-S3CR3T-value\n")
    args = ["train", "model.py", "--api_key=cli-key-S3CR3T", "--runtime=process"]
    result = project.mllib(*args, *(["--detach"] if detach else []))
    secrets = ("hf_TOKEN-S3CR3T-value", "cli-key-S3CR3T", "S3CR3T")
    if detach:
        run_id = result.stdout.strip()
        wait_for(lambda: project.show(run_id)["status"] == "failed", what="the run to fail")
    else:
        assert result.returncode == 1, result.output
        assert "401 for token '***' and key ***" in result.stderr
        assert "token ***" in result.stdout and "key ***" in result.stdout
    run = project.last_run()
    assert run["failure_class"] == "user_error"
    assert run["error"] == "ValueError: 401 for token '***' and key ***"
    logs = project.mllib("runs", "logs", run["id"])
    shown = [result.output, logs.output, project.mllib("runs", "show", run["id"]).output]
    for text in shown:
        assert not any(secret in text for secret in secrets), text
    assert "token ***" in logs.stdout
    run_dir = project.root / ".mllib" / "runs" / run["id"]
    assert b"401 for token '***'" in (run_dir / "events.jsonl").read_bytes()
    assert not any(s.encode() in everything_on_disk(project) for s in secrets)

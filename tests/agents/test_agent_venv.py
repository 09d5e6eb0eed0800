"""An agent whose user may not use Docker runs a project's remote runs in a venv of the project's
own dependencies (planned here, with this machine's versions), built once on the agent: a
project with a third-party dependency works on the first try, and the next run installs nothing.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from helpers import mllib, run_record

from tests.conftest import model_source


def test_a_third_party_dependency_works_on_an_agent_without_docker_and_is_built_once(
    lab, agents, project: Path
) -> None:
    (project / "model.py").write_text(model_source("yaml_docs"))
    (project / "requirements.txt").write_text("PyYAML\n")
    host = lab.hosts[0]

    first = mllib("train", "model.py", "--agent", agents[0], "--evaluate", cwd=project, timeout=600)
    second = mllib("train", "model.py", "--agent", agents[0], "--n=5", cwd=project, timeout=300)

    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    runs = mllib("runs", "list", "--json", cwd=project)
    newer, older = (
        json.loads(mllib("runs", "show", r["id"], "--json", cwd=project).stdout)
        for r in json.loads(runs.stdout)
    )
    for run in (older, newer):
        assert run["status"] == "succeeded" and run["runtime"] == "ssh"
        assert run["runtime_note"].startswith(f"agent {agents[0]}, venv runtime there")
        assert run["environment"]["runtime"] == "venv"
    # One venv served both runs (other tests' runs on this shared lab agent may have built others).
    assert older["environment"]["runtime_id"] == newer["environment"]["runtime_id"]
    env = host.agent_root / "envs" / older["environment"]["runtime_id"]
    assert (env / "mllib-env.json").is_file()
    assert older["metrics"] == {"chars": 5.0} and newer["metrics"] == {"chars": 5.0}
    assert older["eval_metrics"] == {"chars": 5.0}
    first_log = Path(older["log_path"]).read_text()
    second_log = Path(newer["log_path"]).read_text()
    assert "building the environment" in first_log and f"prefix {env}" in first_log
    assert "building the environment" not in second_log and "Installed" not in second_log
    built = json.loads((env / "mllib-env.json").read_text())
    assert built["packages"] == ["cloudpickle", "orjson", "pyyaml", "sentry-sdk"]
    started = datetime.fromisoformat(newer["started_at"].replace("Z", "+00:00")).timestamp()
    assert built["created"] < started  # no installer ran for the second run
    # The agent's Python (Debian's) recorded; the same minor version as this machine's here.
    assert older["environment"]["python"].split(".")[:2] == older["submitted_python"].split(".")[:2]
    assert run_record(project, newer["id"]).status == "succeeded"


def test_prune_frees_the_agents_unused_venvs(lab, agents, project: Path) -> None:
    (project / "model.py").write_text(model_source("yaml_docs"))
    (project / "requirements.txt").write_text("PyYAML\n")
    assert (
        mllib("train", "model.py", "--agent", agents[0], cwd=project, timeout=600).returncode == 0
    )
    envs = lab.hosts[0].agent_root / "envs"
    assert list(envs.glob("*/mllib-env.json"))

    pruned = mllib("agents", "prune", agents[0], "--older-than", "0", "--json", cwd=project)

    assert pruned.returncode == 0, pruned.stderr
    report = json.loads(pruned.stdout)
    assert report["envs"]["envs"] >= 1 and report["envs"]["freed_bytes"] > 0
    assert not list(envs.glob("*/mllib-env.json"))

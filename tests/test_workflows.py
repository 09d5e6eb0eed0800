"""This repository's GitHub Actions workflows are valid as GitHub reads them, and the CI workflow
runs the README's test command on the lock for every push and on the newest releases weekly.

The schemas are the ones check-jsonschema ships (SchemaStore's github-workflows, and its own
rule that every job has a timeout), so nothing is downloaded. actionlint itself runs as the
workflow's first step on GitHub: it cannot be installed on machines without access to GitHub."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
SCHEMAS = ("vendor.github-workflows", "custom.github-workflows-require-timeout")


def check(path: Path, schema: str) -> subprocess.CompletedProcess[str]:
    checker = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run(
        [str(checker), "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_there_is_a_ci_workflow():
    assert ROOT / ".github" / "workflows" / "ci.yml" in WORKFLOWS


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_valid(workflow, schema):
    result = check(workflow, schema)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(
        (ROOT / ".github" / "workflows" / "ci.yml")
        .read_text()
        .replace("runs-on:", "run-on:")
        .replace("    timeout-minutes: 90\n", "")
    )
    for schema in SCHEMAS:
        assert check(broken, schema).returncode != 0, schema


def test_ci_tests_the_lock_on_every_push_and_the_newest_releases_weekly():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "push" in triggers and triggers["schedule"][0]["cron"]
    [job] = workflow["jobs"].values()
    deps = job["env"]["MLLIB_DEPS"]
    assert "github.event_name == 'schedule' && 'newest'" in deps and "'locked'" in deps
    runs = [step.get("run", "") for step in job["steps"]]
    assert any("bash .ci/run" in run for run in runs), runs
    assert any("actionlint" in run for run in runs), runs
    # .ci/run is the README's test command.
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()

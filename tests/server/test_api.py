"""The team server through its real HTTP API and the real `mllib` command, on SQLite and on
PostgreSQL: logging in, submitting (idempotent), seeing only one's own runs, quotas, bad tokens
and malformed requests as one-line errors."""

from __future__ import annotations

import stat

import httpx
import pytest

from mllib.display import fmt_time
from tests.conftest import Project


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def login(project: Project, server, user: str) -> None:
    result = project.mllib("login", server.url, input=server.tokens[user] + "\n")
    assert result.returncode == 0, result.output
    assert server.tokens[user] not in result.output


def submit_detached(project: Project, *args: str) -> str:
    result = project.mllib("train", "model.py", "--remote", "--detach", *args)
    assert result.returncode == 0, result.output
    assert "queued on http://127.0.0.1" in result.stderr and "position" in result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_login_whoami_logout_and_the_credential_file(model_project: Project, team_server, tmp_path):
    team_server.add_user("dee")
    login(model_project, team_server, "dee")
    creds = tmp_path / "mllib-home" / "config" / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert model_project.mllib("whoami").stdout.strip() == f"dee on {team_server.url}"
    assert model_project.mllib("logout").returncode == 0
    # the token was revoked on the server, and forgotten here
    with team_server.client("dee") as http:
        assert http.get("/api/v1/whoami").status_code == 401
    result = model_project.mllib("whoami")
    assert result.returncode == 2 and "No team server is configured" in result.stderr


def test_two_users_submit_and_see_only_their_own_runs(
    model_project: Project, team_server, tmp_path
):
    login(model_project, team_server, "bo")
    mine = submit_detached(model_project, "--epochs=2", "--priority", "3")
    listed = model_project.mllib("runs", "list", "--json").json()
    assert mine in [r["id"] for r in listed] and all(r["status"] == "queued" for r in listed)
    shown = model_project.mllib("runs", "show", mine, "--json").json()
    assert shown["params"]["epochs"] == 2 and shown["user"] == "bo" and shown["status"] == "queued"
    queue = model_project.mllib("queue", "--json").json()
    row = next(r for r in queue["queued"] if r["run_id"] == mine)
    assert row["priority"] == 3 and row["model"] == shown["model"]
    assert abs(_epoch(row["queued_at"]) - _epoch(shown["created_at"])) < 30
    table = model_project.mllib("queue").stdout  # the model and when it was queued, in local time
    line = next(line for line in table.splitlines() if mine in line)
    assert shown["model"] in line and fmt_time(row["queued_at"]) in line
    # ana (admin) sees bo's run with --all; cy sees neither list nor show of it
    with team_server.client("cy") as http:
        answer = http.get(f"/api/v1/runs/{mine}")
        assert answer.status_code == 404 and mine in answer.json()["error"]
        assert mine not in [r["id"] for r in http.get("/api/v1/runs").json()]
        assert http.post(f"/api/v1/runs/{mine}/cancel").status_code == 404
        assert http.get("/api/v1/queue", params={"all": True}).status_code == 401
    with team_server.client("ana") as http:
        everyone = http.get("/api/v1/runs", params={"all": True}).json()
        assert mine in [r["id"] for r in everyone]
    cancelled = model_project.mllib("runs", "cancel", mine)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stderr
    assert model_project.mllib("runs", "show", mine, "--json").json()["status"] == "cancelled"


def test_a_retried_submission_returns_the_same_run(model_project: Project, team_server):
    login(model_project, team_server, "bo")
    run_id = submit_detached(model_project)
    with team_server.client("ana") as http:
        body = http.get(f"/api/v1/runs/{run_id}").json()
    with team_server.client("bo") as http:
        count = len(http.get("/api/v1/runs", params={"limit": 1000}).json())
        again = http.post("/api/v1/runs", json=_resubmission(body, run_id))
        assert again.status_code == 200, again.text
        assert again.json()["id"] == run_id and again.json()["created"] is False
        assert len(http.get("/api/v1/runs", params={"limit": 1000}).json()) == count
        # an environment plan no agent could build is refused before anything is recorded
        bad = _resubmission(body, "badplan00001")
        bad["idempotency_key"] = "bad-plan-00001"
        bad["env_plan"] = {"requirements": [{"text": 3}], "pins": {}, "python": "3", "step": "x"}
        refused = http.post("/api/v1/runs", json=bad)
        assert refused.status_code == 400 and "env_plan" in refused.json()["error"]
        assert http.get("/api/v1/runs/badplan00001").status_code == 404


def _resubmission(shown: dict, run_id: str) -> dict:
    return {
        "run_id": run_id,
        "idempotency_key": f"submit-{run_id}",
        "model": shown["model"],
        "action": shown["action"],
        "model_class": "Basic",
        "model_file": "model.py",
        "code_tree": shown["code_hash"],
        "spec": {"actions": ["train"], "model_file": "model.py", "model_class": "Basic"},
    }


def test_a_quota_refusal_is_one_line_with_retry_after(model_project: Project, team_server):
    login(model_project, team_server, "cy")
    submit_detached(model_project)
    submit_detached(model_project)
    with team_server.client("cy") as http:
        runs = http.get("/api/v1/runs").json()
        body = _resubmission(http.get(f"/api/v1/runs/{runs[0]['id']}").json(), "quota0000001")
        body["idempotency_key"] = "another-key-0001"
        refused = http.post("/api/v1/runs", json=body)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
        assert "limit is 2" in refused.json()["error"]
        assert http.get("/api/v1/runs/quota0000001").status_code == 404  # nothing half-written


@pytest.mark.parametrize(
    "header",
    ["", "Bearer nonsense", "Bearer mlt_0000000000_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"],
)
def test_bad_tokens_are_401_with_a_message(team_server, header):
    headers = {"Authorization": header} if header else {}
    answer = httpx.get(f"{team_server.url}/api/v1/runs", headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"] and "nonsense" not in answer.text


def test_malformed_requests_are_4xx_never_5xx(team_server):
    with team_server.client("bo") as http:
        assert http.post("/api/v1/runs", json={"model": 3}).status_code == 422
        body = _resubmission({"model": "m", "action": "train", "code_hash": "0" * 64}, "abcdefgh1")
        missing_code = http.post("/api/v1/runs", json=body)
        assert missing_code.status_code == 400 and "code" in missing_code.json()["error"]
        assert http.put(f"/api/v1/blobs/{'0' * 64}", content=b"x").status_code == 400
        assert http.put("/api/v1/blobs/zz", content=b"x").status_code == 400
        assert http.get("/api/v1/runs", params={"status": "bogus"}).status_code == 400
        assert http.get("/api/v1/runs/nonexistent").status_code == 404


def test_an_unknown_param_is_refused_before_anything_is_sent(model_project: Project, team_server):
    login(model_project, team_server, "bo")
    result = model_project.mllib("train", "model.py", "--remote", "--nope=1")
    assert result.returncode == 2 and "nope" in result.stderr


def _env_plan_of(server, run_id: str) -> dict | None:
    """The environment plan the server's job for `run_id` holds (written to the run's folder
    at dispatch, for the agent to build)."""
    import json

    from mllib.queue.jobs import get_job
    from mllib.server.main import database, home_at

    reg = database(home_at(server.home))
    try:
        job = get_job(reg, run_id)
    finally:
        reg.close()
    return json.loads(job.env_plan) if job is not None and job.env_plan else None


def test_a_run_is_rerun_on_the_server_with_its_recorded_params(model_project: Project, team_server):
    login(model_project, team_server, "bo")
    model_project.write("requirements.txt", "numpy\n")
    original = submit_detached(model_project, "--epochs=4", "--gpus", "2")
    again = model_project.mllib("runs", "rerun", original, "--detach")
    assert again.returncode == 0, again.output
    rerun_id = again.stdout.strip().splitlines()[-1]
    shown = model_project.mllib("runs", "show", rerun_id, "--json").json()
    assert shown["rerun_of"] == original and shown["params"]["epochs"] == 4
    queue = model_project.mllib("queue", "--json").json()
    assert {r["run_id"]: r["gpus"] for r in queue["queued"]}[rerun_id] == 2
    # the environment planned on this machine (its numpy) goes with the run, and its rerun
    import numpy

    for run_id in (original, rerun_id):
        plan = _env_plan_of(team_server, run_id)
        assert plan is not None and plan["pins"]["numpy"] == numpy.__version__, plan
    with team_server.client("cy") as http:  # another user's run cannot be rerun
        body = {"run_id": "zzzzzzzz1", "idempotency_key": "rerun-zzzzzzzz1"}
        assert http.post(f"/api/v1/runs/{original}/rerun", json=body).status_code == 404


def test_the_cli_reports_a_quota_at_once_in_one_line(model_project: Project, team_server):
    login(model_project, team_server, "cy")  # cy may have 2 runs queued; earlier tests queued them
    with team_server.client("cy") as http:
        queued = [r for r in http.get("/api/v1/runs").json() if r["status"] == "queued"]
    for _ in range(2 - len(queued)):
        submit_detached(model_project)
    refused = model_project.mllib("train", "model.py", "--remote", "--detach", timeout=30)
    assert refused.returncode == 1, refused.output
    lines = refused.stderr.strip().splitlines()
    assert "limit is 2" in lines[-2] and "Try again in" in lines[-1]

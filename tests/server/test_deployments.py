"""Deployments the team server is told of (`POST /api/v1/deployments`, which each `mllib deploy`
command sends when a server is configured): recorded once whatever the retries, by the user who
sent them, and a malformed one refused with a one-line error (a real server on loopback, SQLite
and PostgreSQL). tests/agents/test_server_schedules.py deploys for real and follows a schedule
of NAME@prod through them."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Project
from tests.server.test_api import login

PATH = "/api/v1/deployments"
BODY = {
    "id": "d0test000001",
    "model": "iris",
    "version": 2,
    "run_id": "r0test000001",
    "env": "prod",
    "action": "deploy",
    "deployed_at": "2026-12-07T22:00:00Z",
}


def test_a_deployment_is_recorded_once_and_a_malformed_one_is_refused(team_server):
    with team_server.client("bo") as http:
        first = http.post(PATH, json=BODY)
        assert first.status_code == 200, first.text
        recorded = first.json()
        assert recorded["created"] is True and recorded["user"] == "bo"
        assert recorded["deployed_at"] == "2026-12-07T22:00:00.000000Z"
        assert recorded["known"] is False  # no run of the server's made iris v2
        again = http.post(PATH, json=BODY | {"version": 3})  # a retry: the first record stays
        assert again.status_code == 200 and again.json()["created"] is False
        assert again.json()["version"] == 2

        qa = http.post(PATH, json=BODY | {"id": "d0test000002", "env": "qa"})
        assert qa.status_code == 400 and qa.json()["error"] == "Unknown environment 'qa'"
        when = http.post(PATH, json=BODY | {"id": "d0test000003", "deployed_at": "yesterday"})
        assert when.status_code == 400 and when.json()["error"] == "Not a time: 'yesterday'"
        extra = http.post(PATH, json=BODY | {"id": "d0test000004", "replicas": 3})
        assert extra.status_code == 422
    anonymous = httpx.post(team_server.url + PATH, json=BODY | {"id": "d0test000005"})
    assert anonymous.status_code == 401


# One replica of one process: the deployment here only needs to go live.
SERVING = """[serve]
workers = 1
api_servers = 1

[deploy]
ready_timeout_s = 180
stop_grace_s = 15
"""


@pytest.mark.parametrize("team_server", ["sqlite"], indirect=True)
def test_a_deploy_is_sent_to_the_server_once_and_says_when_it_holds_no_such_version(
    model_project: Project, team_server
):
    """A real `mllib deploy` to staging with the server configured: the server records it (this
    project's own version, which no run of the server's made: the deploy says its schedules
    cannot evaluate it), and nothing is sent twice."""
    login(model_project, team_server, "bo")
    model_project.write("mllib.toml", SERVING)
    trained = model_project.mllib("train", "model.py", "--local")
    assert trained.returncode == 0, trained.output
    try:
        done = model_project.mllib("deploy", "Basic:1", "--env", "staging", "--json")
        assert done.returncode == 0, done.output
        deployment = done.json()
        assert "  Recorded on the team server: Basic v1 on staging." in done.stderr
        assert (
            "  The team server holds no such version of Basic: its schedules of Basic@staging "
            "cannot evaluate what staging serves (deploy one it trained)."
        ) in done.stderr
        status = model_project.mllib("deploy", "status")
        assert status.returncode == 0 and "team server" not in status.stderr  # nothing left
        with team_server.client("bo") as http:
            again = http.post(PATH, json=BODY | {"id": deployment["deployment_id"]})
        assert again.json()["created"] is False and again.json()["model"] == "Basic"
        assert again.json()["env"] == "staging" and again.json()["version"] == 1
    finally:
        model_project.mllib("deploy", "stop", "--env", "staging")

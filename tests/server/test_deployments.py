"""Deployments the team server is told of (`POST /api/v1/deployments`, which each `mllib deploy`
command sends when a server is configured): recorded once whatever the retries, by the user who
sent them, and a malformed one refused with a one-line error (a real server on loopback, SQLite
and PostgreSQL). tests/agents/test_server_schedules.py deploys for real and follows a schedule
of NAME@prod through them."""

from __future__ import annotations

import httpx

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

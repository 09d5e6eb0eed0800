"""`GET /api/v1/agents` of a real team server on loopback and `mllib agents list` against it: any
logged-in user sees the server's agents with their GPU slots and reachability, never a key or a
key's path. Here the agent is declared in the server's mllib.toml on a port where nothing
listens; agents that answer, runs holding their slots and a key path in a real SSH error are in
tests/agents/test_team_server.py (the sshd lab)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Project
from tests.server.conftest import with_a_silent_agent

KEY = "/keys/far-away/id_ed25519"  # never read: nothing answers on the agent's port


@pytest.fixture
def fleet_server(tmp_path):
    """A server whose one agent, `far` (2 GPUs, login ml, key KEY), does not answer."""
    server, address = with_a_silent_agent(tmp_path, user="ml", key=KEY)
    server.far = address
    yield server
    server.stop()


def test_any_logged_in_user_sees_the_servers_agents_and_can_have_them_checked(fleet_server):
    with httpx.Client(base_url=fleet_server.url) as anonymous:
        assert anonymous.get("/api/v1/agents").status_code == 401
    with fleet_server.client("bo") as http:
        listed = http.get("/api/v1/agents")
        assert listed.status_code == 200
        assert listed.json() == [
            {
                "name": "far",
                "address": f"ml@{fleet_server.far}",
                "gpus": 2,
                "slots": 2,
                "used": 0,
                "running": [],
                "reachable": None,
                "problem": None,
                "checked_at": None,
            }
        ]  # fmt: skip: not asked since the server started (it has had no run to give it)
        checked = http.get("/api/v1/agents", params={"check": True})
    [far] = checked.json()
    assert far["reachable"] is False and far["checked_at"]
    assert far["problem"].startswith(f"Cannot reach agent far at {fleet_server.far}")
    assert "far-away" not in listed.text + checked.text and "id_ed25519" not in checked.text
    with fleet_server.client("bo") as http:  # the answer is kept: a later read shows it
        assert http.get("/api/v1/agents").json() == [far]


def test_the_agents_endpoint_is_in_the_openapi_document_without_keys(fleet_server):
    document = httpx.get(f"{fleet_server.url}/openapi.json").json()
    operation = document["paths"]["/api/v1/agents"]["get"]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["type"] == "array" and answer["items"]["$ref"].endswith("/Agent")
    assert [p["name"] for p in operation["parameters"]] == ["check"]
    agent = document["components"]["schemas"]["Agent"]["properties"]
    assert set(agent) == {"name", "address", "gpus", "slots", "used", "running", "reachable",
                          "problem", "checked_at"}  # fmt: skip
    assert set(document["components"]["schemas"]["AgentRun"]["properties"]) == {
        "run_id", "user", "gpus"
    }  # fmt: skip


def test_mllib_agents_list_shows_the_team_servers_agents_and_local_with_local(
    project: Project, fleet_server
):
    project.write("mllib.toml", 'name = "p"\n')
    login = project.mllib("login", fleet_server.url, input=fleet_server.tokens["bo"] + "\n")
    assert login.returncode == 0, login.output
    shown = project.mllib("agents", "list")
    assert shown.returncode == 0, shown.output
    header, row = shown.stdout.splitlines()
    assert header.split() == ["NAME", "ADDRESS", "GPUS", "SLOTS", "RUNNING", "REACHABLE"]
    assert row.split() == ["far", f"ml@{fleet_server.far}", "2", "0/2", "-",
                           "not", "asked", "yet"]  # fmt: skip
    checked = project.mllib("agents", "list", "--check", "--json")
    assert checked.returncode == 0, checked.output
    assert checked.json()[0]["reachable"] is False
    assert "no: Cannot reach agent far" in project.mllib("agents", "list").stdout
    local = project.mllib("agents", "list", "--local")
    assert local.returncode == 0 and "No agents yet" in local.stderr and not local.stdout

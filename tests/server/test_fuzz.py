"""The team server's OpenAPI document, fuzzed with schemathesis against the real server process:
whatever a client sends, well-formed by the schema or not (positive and negative generation),
the answer is never a 5xx. Each operation is called with a valid token, so the checks reach past
authentication."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

schema = schemathesis.pytest.from_fixture("fuzzed_api")


@pytest.fixture(scope="module")
def fuzzed_api(team_server):
    from schemathesis.config import SchemathesisConfig

    config = SchemathesisConfig.from_dict({"generation": {"mode": "all"}})
    return schemathesis.openapi.from_url(f"{team_server.url}/openapi.json", config=config)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_gets_a_5xx(case, team_server):
    headers = {"Authorization": f"Bearer {team_server.tokens['bo']}"}
    case.call_and_validate(
        base_url=team_server.url, headers=headers, checks=[not_a_server_error], timeout=30
    )

"""Telling the team server what went live on this machine's staging or prod
(mllib.server.deployments), so its `NAME@prod` and the schedules evaluating it follow
`mllib deploy`.

>>> record(server, {"id": "d3k9...", "model": "iris", "version": 2, "env": "prod", ...})  # doctest: +SKIP
{'id': 'd3k9...', 'model': 'iris', 'version': 2, 'env': 'prod', 'created': True, 'known': True}
"""

from __future__ import annotations

from typing import Any

from mllib.client.http import Server

PATH = "/api/v1/deployments"


def record(server: Server, deployment: dict[str, Any]) -> dict[str, Any]:
    """Record one deployment on the server (its id makes sending it again harmless): the record,
    with `known` false when the server has no such version to evaluate."""
    answer: dict[str, Any] = server.post(PATH, deployment, retry=False)
    return answer

"""A deployment's replicas on agent hosts (`mllib deploy MODEL --env staging --agents h0,h1`):
real sshd hosts (sshlab.py), the real agent program, real LitServe servers on them, the gateway
on this machine, a real API key and HTTP client.

What a user sees is asserted: answers through the gateway (each agent's replica answers some,
by the request log), `deploy status` (and `--json`) saying where each replica runs and listing
the gateway here apart, not as a replica, a replica whose server is killed, then both of a host
that disappears (its sshd and processes gone), replaced on the other agent while answers keep
coming (every answer counted: none failed), and `deploy stop` leaving nothing running on either
agent.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import pytest
from deployed import Traffic, deploy, on_agents, prepare, servers, status
from helpers import mllib
from sshlab import wait_for

from tests.serving.test_replicas import metric

STAGING_WITH_KEYS = """
[serve]
drain_s = 1.0
timeout_s = 10.0
min_replicas = 2  # one on each agent all along (test_scale_on_agents.py scales them)

[deploy]
ready_timeout_s = 600
stop_grace_s = 10

[deploy.staging]
require_keys = true
"""


def _wait_placed(project: Path, where: list[str], traffic: Traffic) -> None:
    """Until the ready agent replicas are on `where`, and some answers came after."""
    wait_for(
        lambda: sorted(on_agents(status(project)).values()) == where,
        timeout=300,
        interval=1.0,
        what=f"replicas on {where}",
    )
    before = len(traffic.statuses)
    wait_for(lambda: len(traffic.statuses) >= before + 20, timeout=60, what="more answers")


@pytest.mark.timeout(1200)  # the lab, a training run, and the server's venv built on each agent
def test_replicas_on_two_agents_answer_through_the_gateway_are_replaced_and_stopped(
    lab, agents, project: Path, staging_stopped
) -> None:
    from mllib.serving.clock import SystemClock
    from mllib.serving.control import keys
    from mllib.serving.control.settings import KeySettings
    from mllib.workspace import Workspace

    prepare(lab, project, STAGING_WITH_KEYS)
    ws = Workspace.find(project)
    key = keys.create_key(
        ws.registry, SystemClock(), KeySettings(), env="staging", user="alice", rps=1000.0
    ).token

    deploy(project, "steps", "--agents", ",".join(agents))
    row = status(project)
    placed = on_agents(row)
    assert sorted(placed.values()) == sorted(agents), row["replicas"]
    # The replicas are the agents' alone; this machine's gateway process is listed apart.
    assert [r for r in row["replicas"] if r["host"] == "local"] == [], row["replicas"]
    (gateway,) = row["gateway"]
    assert gateway["host"] == "local" and gateway["state"] == "ready", gateway
    (stable,) = row["variants"]
    assert stable["replicas"] == 2 and stable["hosts"] == dict.fromkeys(agents, 1), stable
    shown = mllib("deploy", "status", "--env", "staging", cwd=project).stdout
    assert f"2 ({row['inference']}) on agents {', '.join(sorted(agents))}" in shown, shown
    url = row["url"]
    wait_for(  # the metric counts them alike (it is written every half second)
        lambda: metric(url, "mllib_replicas", variant="stable") == 2, timeout=30,
        what="mllib_replicas 2",
    )  # fmt: skip
    assert httpx.post(f"{url}/predict", json={"x": 1}).status_code == 401  # keys still checked
    traffic = Traffic(url, key)
    try:
        wait_for(lambda: len(traffic.statuses) >= 50, timeout=60, what="answers")
        log = (Path(row["log_path"])).read_text()
        answered_by = {json.loads(line).get("replica") for line in log.splitlines() if "{" in line}
        assert set(placed) <= answered_by, answered_by  # each agent's replica answered some

        # h0's server is killed: its replica is started again on h1, answers keep coming.
        for proc in servers(lab.hosts[0]):
            os.kill(proc.pid, signal.SIGKILL)
        _wait_placed(project, [agents[1], agents[1]], traffic)

        # h1 disappears (its sshd and every process of it gone): both replicas move to h0.
        lab.hosts[1].stop()
        for proc in lab.hosts[1].processes():
            os.kill(proc.pid, signal.SIGKILL)
        _wait_placed(project, [agents[0], agents[0]], traffic)
        (stable,) = status(project)["variants"]
        assert stable["replicas"] == 2 and stable["hosts"] == {agents[0]: 2}, stable
        lab.hosts[1].start()  # back, for the stop to find nothing of the deployment left
    finally:
        traffic.stop()
    failed = traffic.failed()
    print(f"answers: {len(traffic.statuses)}, non-2xx: {len(failed)}, errors: {traffic.errors}")
    assert not failed and not traffic.errors
    history = mllib("deploy", "history", "--env", "staging", "--json", cwd=project)
    replaced = [e for e in json.loads(history.stdout) if e["action"] == "replace"]
    assert len(replaced) == 3 and all("agent" in e["reason"] for e in replaced), replaced

    stopped = mllib("deploy", "stop", "--env", "staging", cwd=project, timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    for host in lab.hosts:
        assert servers(host) == []
        assert not list((host.agent_root / "serving").glob("d*")), "a deployment's folder is left"

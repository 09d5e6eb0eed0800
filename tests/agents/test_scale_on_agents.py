"""A deployment on agents that scales itself (`mllib deploy MODEL --agents h0,h1` with [serve]
min/max_replicas): real sshd hosts (sshlab.py), the real agent program, real LitServe servers
on them, the gateway and controller on this machine, real HTTP clients.

What a user sees is asserted: under load the controller adds replicas on the agents, each on
the one with the most free capacity (the replicas there count against it, so the second goes
to the other agent); once the load is gone it drains and stops them one at a time until one is
left, and the agent that held the last ones stopped has nothing of the deployment running
(`deploy status`, `deploy history`, the processes and folders on each host, every answer
counted: none failed). Then the host of the last replica disappears long enough for it to be
replaced on the other agent, and comes back with the old replica still running: the controller
stops it. Last, the controller is killed with `[deploy] restart_limit = 1`: its supervisor
gives up and stops the replicas on the agents too.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from deployed import SERVED, Traffic, deploy, history, on_agents, prepare, servers, status
from sshlab import wait_for

SCALING = """
[serve]
drain_s = 1.0
timeout_s = 10.0
min_replicas = 1
max_replicas = 4
target_inflight = 1
scale_down_after_s = 10  # long enough for the load to begin before any goes

[deploy]
ready_timeout_s = 600
stop_grace_s = 5
restart_limit = 1
"""


def _where(project: Path) -> list[str]:
    return sorted(on_agents(status(project)).values())


def _scaling(project: Path, result: str) -> list[dict]:
    return [e for e in history(project) if e["action"] == "scale" and e["result"] == result]


@pytest.mark.timeout(1800)  # the lab, a training run, the server's venv built on each agent
def test_replicas_on_agents_scale_up_by_capacity_down_by_draining_and_are_reconciled(
    lab, agents, project: Path, staging_stopped
) -> None:
    prepare(lab, project, SCALING, model=SERVED)
    deploy(project, "steps", "--agents", ",".join(agents))
    row = status(project)
    assert _where(project) == sorted(agents)  # one on each agent to begin with
    url = row["url"]

    steady = Traffic(url, pause_s=0.2)  # light: it never keeps a replica busy
    try:
        # Six clients each waiting 0.3 s on every answer: 6 in flight, 1 per replica wanted,
        # 4 at most. h0 and h1 tie for the first new one (the first agent takes it); then h0
        # holds two, so the next goes to h1.
        load = Traffic(url, clients=6, body={"x": 1, "sleep": 0.3})
        try:
            wait_for(
                lambda: _where(project) == [agents[0], agents[0], agents[1], agents[1]],
                timeout=600, interval=1.0, what="4 replicas, 2 on each agent",
            )  # fmt: skip
        finally:
            load.stop()
        assert load.statuses and not load.failed() and not load.errors, load.errors[:3]
        ups = [e for e in history(project) if e["action"] == "scale" and e["result"] == "up"]
        said = " ".join(e["reason"] for e in ups)  # in one step, or two (the p99 path first)
        assert ups[-1]["reason"].startswith("stable 2 → ") and "→ 4 replicas" in said, ups
        assert f"a3 starts on agent {agents[0]}" in said, ups
        assert f"a4 starts on agent {agents[1]}" in said, ups

        # The load gone: one replica drained and stopped at a time, down to min_replicas. The
        # newest on the agent that holds the most goes each time: a4 (h1), a3 (h0), a2 (h1).
        wait_for(
            lambda: _where(project) == [agents[0]], timeout=300, interval=1.0,
            what="one replica left, on h0",
        )  # fmt: skip
        folders = (lab.hosts[1].agent_root / "serving").glob  # each replica's server's folder
        wait_for(
            lambda: servers(lab.hosts[1]) == [] and not list(folders("d*/servers/*")),
            timeout=60, what="nothing of the deployment left on h1: processes, folders",
        )  # fmt: skip
        wait_for(  # each is recorded once its agent said it stopped it
            lambda: {e["detail"]["replica"] for e in _scaling(project, "stopped")} == {"a2", "a3", "a4"},
            timeout=60, what="3 replicas stopped, in the history",
        )  # fmt: skip
        downs = [e["reason"].split(":")[0] for e in _scaling(project, "down")]
        assert downs == [  # newest first
            "stable 2 → 1 replicas", "stable 3 → 2 replicas", "stable 4 → 3 replicas",
        ], downs  # fmt: skip

        # h0 disappears (its sshd, not its processes): its replica is replaced on h1 while
        # the old one keeps running there; once h0 answers again the controller stops it.
        (old,) = on_agents(status(project))
        lab.hosts[0].stop()
        wait_for(lambda: _where(project) == [agents[1]], timeout=120, what="replaced on h1")
        assert servers(lab.hosts[0]), "the replaced replica should still run on h0"
        lab.hosts[0].start()
        wait_for(lambda: servers(lab.hosts[0]) == [], timeout=60, what="h0's old replica stopped")
        wait_for(
            lambda: [e for e in history(project) if e["action"] == "reconcile"], timeout=30,
            what="the stop in the history",
        )  # fmt: skip
        (reconciled,) = [e for e in history(project) if e["action"] == "reconcile"]
        assert f"replica {old} on agent {agents[0]}" in reconciled["reason"], reconciled
    finally:
        steady.stop()
    print(f"answers: {len(steady.statuses)}, non-2xx: {len(steady.failed())}")
    assert steady.statuses and not steady.failed() and not steady.errors, steady.errors[:3]

    # The controller killed with restart_limit = 1: its supervisor gives up, and stops the
    # replica on the agent as well as the gateway here.
    state = json.loads((Path(row["log_path"]).parent / "fleet.json").read_text())
    os.kill(state["controller_pid"], signal.SIGKILL)
    wait_for(lambda: status(project)["state"] == "failed", timeout=120, what="given up")
    for host in lab.hosts:
        assert servers(host) == []
    (gave_up,) = [e for e in history(project) if e["action"] == "restart"]
    assert "its replicas on agents stopped" in gave_up["reason"], gave_up

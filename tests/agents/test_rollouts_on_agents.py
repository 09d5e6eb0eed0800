"""Canaries of a deployment on agents (`mllib deploy MODEL:V --canary 50` beside replicas
started with `--agents h0,h1`): the candidate's replicas run on the agents too, placed as
stable's are. Real sshd hosts (sshlab.py), the real agent program and LitServe servers on them,
the gateway and controller here, real HTTP clients.

What a user sees is asserted: the gateway here runs one process beside min_replicas = 2 on the
agents (`deploy status --json`: its `gateway`, apart from `replicas`); a slow canary's replicas
on the agents, which it scales up on its own load as stable's are, then its automatic rollback (`deploy history`) with no failed request and
all of its replicas stopped on the agents; `--agents` naming other agents refused in one line
(exit 2); a sound version's shadow scaled up on its load and down by draining a replica on its
agent, then promoted, its replicas on the agents becoming stable's while the old ones drain and
stop, with no failed request and every answer after it from the new version.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from deployed import SERVED, Traffic, deploy, history, prepare, servers, status
from helpers import mllib
from sshlab import wait_for

CONFIG = """
[serve]
drain_s = 1.0
timeout_s = 10.0
min_replicas = 2  # one on each agent all along
max_replicas = 3  # the slow canary's third replica, on its own load
target_inflight = 2  # stable's light traffic stays under it; the slow canary's does not
scale_down_after_s = 5
p99_objective_ms = 1000  # the lab's busy CPUs neither add replicas nor hold a scale-down back

[rollout]
window_s = 5.0
min_requests = 20
promote_interval_s = 1.0

[deploy]
ready_timeout_s = 600
stop_grace_s = 5
"""


def _variants(project: Path) -> dict[str, list[tuple[str, str]]]:
    """Per variant, (agent, version) of each ready replica on the agents."""
    found: dict[str, list[tuple[str, str]]] = {}
    for replica in status(project)["replicas"]:
        if replica["host"] != "local" and replica["state"] == "ready":
            found.setdefault(replica["variant"], []).append((replica["host"], replica["version"]))
    return {name: sorted(where) for name, where in found.items()}


@pytest.mark.timeout(1800)  # the lab, three training runs, the servers' venv on each agent
def test_a_canary_on_agents_rolls_back_with_no_failed_request_and_another_is_promoted(
    lab, agents, project: Path, staging_stopped
) -> None:
    prepare(lab, project, CONFIG, (), ("--bias=2", "--slow_s=0.2"), ("--bias=3",), model=SERVED)
    deploy(project, "steps:1", "--agents", ",".join(agents))
    assert _variants(project) == {"stable": [(agents[0], "1"), (agents[1], "1")]}
    row = status(project)
    assert [r for r in row["replicas"] if r["host"] == "local"] == [], row["replicas"]
    assert len(row["gateway"]) == 1, row["gateway"]  # the gateway's process, not 2 replicas
    url = row["url"]

    traffic = Traffic(url, clients=8, pause_s=0.05)
    try:
        # v2 answers in 0.2 s (its 2 replicas: 10 requests/s, enough to be judged within the
        # 5 s window): its replicas start on the agents; the clients' requests wait on it (more
        # than 2 in flight per replica), so it gains a third there; then it is rolled back.
        deploy(project, "steps:2", "--canary", "50")
        wait_for(
            lambda: [e for e in history(project) if e["action"] == "rollback"],
            timeout=300, interval=1.0, what="the slow canary rolled back",
        )  # fmt: skip
        events = history(project)
        (rolled,) = [e for e in events if e["action"] == "rollback" and e["result"] != "stopped"]
        assert rolled["result"] == "auto" and "p99" in rolled["reason"], rolled
        (started,) = [e for e in events if e["action"] == "rollout"]
        assert f"starts on agent {agents[0]}" in started["reason"], started
        assert f"starts on agent {agents[1]}" in started["reason"], started
        (grew,) = [e for e in events if e["action"] == "scale"]  # stable's stayed at 2
        assert grew["result"] == "up" and grew["detail"]["variant"] == "canary", grew
        assert grew["reason"].startswith("canary 2 → 3 replicas") and " starts on agent " in grew["reason"], grew  # fmt: skip
        wait_for(
            lambda: all(_one_server(host) for host in lab.hosts),
            timeout=120, what="the canary's replicas stopped on the agents",
        )  # fmt: skip
        wait_for(
            lambda: len([e for e in history(project) if e["action"] == "rollback" and e["result"] == "stopped"]) == 3,
            timeout=60, what="its 3 replicas stopped, in the history",
        )  # fmt: skip
        stopped = [e for e in history(project) if e["action"] == "rollback" and e["result"] == "stopped"]  # fmt: skip
        assert all("(canary)" in e["reason"] for e in stopped), stopped
        assert _variants(project) == {"stable": [(agents[0], "1"), (agents[1], "1")]}

        refused = mllib(
            "deploy", "steps:3", "--env", "staging", "--canary", "10", "--agents", agents[1],
            cwd=project,
        )  # fmt: skip
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"a canary runs where steps v1 runs, on agents {', '.join(agents)}" in (
            refused.stdout + refused.stderr
        )

        # v3 as a shadow (copies of every request, never judged): a load that keeps each
        # variant busy (6 requests in flight, 2 per replica wanted) gives it a third replica
        # on the agents, as it gives stable; the load gone, it drains one and stops it on its
        # agent. Then it is promoted at once: its replicas on the agents are stable's.
        deploy(project, "steps:3", "--shadow", "--agents", ",".join(agents))
        load = Traffic(url, clients=12, body={"x": 1, "sleep": 0.3})
        try:
            wait_for(
                lambda: len(_variants(project).get("shadow", [])) == 3,
                timeout=120, interval=1.0, what="v3's third replica ready",
            )  # fmt: skip
        finally:
            load.stop()
        assert load.statuses and not load.failed() and not load.errors, load.errors[:3]
        wait_for(lambda: _scaled(project, "shadow", "down"), timeout=120, what="v3 down")
        (down,) = _scaled(project, "shadow", "down")
        assert down["reason"].startswith("shadow 3 → 2 replicas") and " drains" in down["reason"]
        wait_for(
            lambda: [e for e in history(project) if e["action"] == "scale" and e["result"] == "stopped" and "(shadow)" in e["reason"]],
            timeout=60, interval=1.0, what="its replica stopped on its agent",
        )  # fmt: skip
        promoted = mllib("deploy", "promote", "--env", "staging", "--steps", "100", cwd=project)
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        wait_for(
            lambda: _variants(project) == {"stable": [(agents[0], "3"), (agents[1], "3")]},
            timeout=300, interval=1.0, what="v3 stable on both agents",
        )  # fmt: skip
        wait_for(lambda: all(_one_server(h) for h in lab.hosts), timeout=120, what="v1 stopped")
        before = len(traffic.statuses)
        wait_for(lambda: len(traffic.statuses) > before + 50, timeout=60, what="more answers")
    finally:
        traffic.stop()
    failed = traffic.failed()
    print(f"answers: {len(traffic.statuses)}, non-2xx: {len(failed)}, errors: {traffic.errors}")
    assert traffic.statuses and not failed and not traffic.errors, traffic.errors[:3]
    assert httpx.post(f"{url}/predict", json={"x": 1}).json()["y"] == 4.0  # v3: 1 + 3

    stopped = mllib("deploy", "stop", "--env", "staging", cwd=project, timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    for host in lab.hosts:
        assert servers(host) == []


def _scaled(project: Path, variant: str, result: str) -> list[dict]:
    """The scaling events of `variant` with `result` (up, down)."""
    return [
        e for e in history(project)
        if e["action"] == "scale" and e["result"] == result and e["detail"]["variant"] == variant
    ]  # fmt: skip


def _one_server(host) -> bool:
    """One replica's server running on `host` (its processes share one server folder)."""
    folders = list((host.agent_root / "serving").glob("d*/servers/*"))
    return len(folders) == 1 and bool(servers(host))

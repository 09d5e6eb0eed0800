"""kill -9 of a deployment's processes and of `mllib deploy` itself, as an operator would meet
them: real servers on loopback, real HTTP clients, the real `mllib` command. After each fault
the next command finds a consistent state: one version answering on the URL, no row left
starting, nothing of ours left running, and the reconciliation in `deploy history`.
(A killed controller is tests/serving/test_replicas.py's.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mllib.serving.clock import FakeClock
from mllib.serving.control import process, records
from mllib.serving.control.deploy import DeployContext, deploy, stop
from mllib.serving.control.fleet import read_state
from mllib.workspace import Workspace
from tests.conftest import wait_for
from tests.serving.conftest import cli, copy_project, train


@pytest.fixture(scope="module")
def faults(trained_template, tmp_path_factory):
    """v1 live on staging; v5 is v2's model taking 60 s to load (a deploy still starting)."""
    project = copy_project(trained_template, tmp_path_factory)
    project.runs["v5"] = train(project, "--bias=1", "--load_delay=60")
    ctx = DeployContext.create(
        Workspace.find(project.root), clock=FakeClock(time.time()), user="alice"
    )
    deploy(ctx, "served:1", "staging")
    yield project, ctx
    for dep in records.running(ctx.ws.registry):
        process.stop(dep.pid, marker=dep.marker, grace_s=5)


def bias(url: str) -> float | None:
    try:
        return httpx.post(f"{url}/predict", json={"x": [1]}, timeout=10).json()["bias"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def history(project) -> list[dict]:
    done = cli(project, "deploy", "history", "--env", "staging", "--json")
    assert done.returncode == 0, done.output
    return done.json()


def test_a_killed_mllib_deploy_leaves_the_old_version_serving_and_nothing_starting(faults):
    project, ctx = faults
    before = records.live(ctx.ws.registry, "staging")
    deploying = subprocess.Popen(
        [sys.executable, "-m", "mllib", "deploy", "served:5", "--env", "staging"],
        cwd=project.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        started = wait_for(
            lambda: [d for d in records.running(ctx.ws.registry, "staging") if d.state == "starting" and d.pid],
            timeout=60, what="the new deployment to be starting",
        )[0]  # fmt: skip
    finally:
        deploying.kill()  # kill -9 of `mllib deploy` while its servers load the model
        deploying.wait()
    assert process.members(started.pid, started.marker)  # its controller runs on, orphaned

    status = cli(project, "deploy", "status", "--env", "staging", "--json")  # reconciles
    assert status.returncode == 0, status.output
    (row,) = status.json()
    assert (row["state"], row["version"], row["deployment_id"]) == ("live", 1, before.id)
    abandoned = records.get(ctx.ws.registry, started.id)
    assert abandoned.state == "failed" and "interrupted" in (abandoned.error or "")
    assert not process.members(started.pid, started.marker)  # nothing of it left running
    assert not [d for d in records.running(ctx.ws.registry) if d.state == "starting"]
    assert bias(before.url) == 0.0  # v1 answers on the URL
    (entry,) = [h for h in history(project) if "reconciled" in (h.get("reason") or "")]
    assert entry["result"] == "failed" and entry["deployment_id"] == started.id


def test_a_killed_server_process_is_replaced_and_the_url_answers_again(faults):
    project, ctx = faults
    dep = records.live(ctx.ws.registry, "staging")
    state = read_state(Path(dep.dir))
    stable = state["servers"][state["stable_id"]]
    os.kill(stable["pid"], signal.SIGKILL)  # the stable server's own process (not the controller)
    replaced = wait_for(
        lambda: (s := read_state(Path(dep.dir)))["stable_id"] != state["stable_id"] and s,
        timeout=60, what="a replacement server",
    )  # fmt: skip
    wait_for(lambda: bias(dep.url) == 0.0, timeout=90, what="the URL to answer again")
    new = replaced["servers"][replaced["stable_id"]]
    assert new["pid"] != stable["pid"]
    wait_for(
        lambda: not process.members(stable["pid"], dep.marker, var=process.REPLICA_MARKER)
        or read_state(Path(dep.dir))["servers"].get(state["stable_id"]) is None,
        timeout=60, what="the dead server's processes to be retired",
    )  # fmt: skip
    events = [h for h in history(project) if h["action"] == "replace"]
    assert events and state["stable_id"] in events[0]["reason"]
    status = cli(project, "deploy", "status", "--env", "staging", "--json").json()
    assert status[0]["state"] == "live" and status[0]["deployment_id"] == dep.id
    (stopped,) = stop(ctx, "staging")
    assert not process.members(stopped.pid, stopped.marker)
    assert json.loads(cli(project, "deploy", "status", "--json").stdout)[0]["state"] != "live"

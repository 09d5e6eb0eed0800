"""A deployment whose controller keeps dying: its supervisor starts it again with a backoff, and
gives up after [deploy] restart_limit failures within restart_window_s. Real servers on loopback,
the controller killed with SIGKILL, the real `mllib deploy status` and `history`."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from rich.console import Console

from mllib.cli.deploy_status import print_status
from mllib.serving import pids
from mllib.serving.clock import FakeClock
from mllib.serving.control import process, records, supervisor
from mllib.serving.control.deploy import DeployContext, deploy
from mllib.serving.control.status import status
from mllib.workspace import Workspace
from tests.conftest import wait_for
from tests.serving.conftest import CONFIG, cli, copy_project
from tests.serving.test_interruptions import Poller, left_running
from tests.serving.test_process_faults import bias, history

RESTARTS = "[deploy]\nrestart_limit = 3\nrestart_window_s = 300\nrestart_backoff_s = 12\n"


@pytest.fixture(scope="module")
def restarting(trained_template, tmp_path_factory):
    project = copy_project(trained_template, tmp_path_factory)
    project.write("mllib.toml", CONFIG.replace("[deploy]\n", RESTARTS))
    ctx = DeployContext.create(
        Workspace.find(project.root), clock=FakeClock(time.time()), user="alice"
    )
    yield project, ctx
    for dep in records.running(ctx.ws.registry):
        process.stop(dep.pid, marker=dep.marker, grace_s=5, records=pids.folder_of(dep.dir))


def kill_controller(dep: records.Deployment) -> int:
    """SIGKILL the deployment's controller (running now); its pid."""
    pid = wait_for(
        lambda: (s := supervisor.read(Path(dep.dir))).get("state") == "running" and s["controller_pid"],
        timeout=60, what="a running controller",
    )  # fmt: skip
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_killed_controller_is_restarted_after_a_backoff_and_status_says_so(restarting):
    project, ctx = restarting
    dep = deploy(ctx, "served:1", "staging").deployment
    poller = Poller(dep.url)
    try:
        killed = kill_controller(dep)
        (row,) = wait_for(
            lambda: ((rows := status(ctx, "staging", window_s=0.05))[0]["restart"] or {}).get("state") == "restarting" and rows,
            timeout=10, what="the supervisor to see it",
        )  # fmt: skip  # what `deploy status --json` prints, without the command's start-up
        shown = Console(record=True, width=160)  # as `deploy status` prints the same rows
        print_status([row], shown)
        assert "restarting (attempt 2, next in" in shown.export_text()
        assert row["state"] == "live" and row["restart"]["state"] == "restarting"
        assert row["restart"]["attempt"] == 2 and 0 <= row["restart"]["next_in_s"] <= 12
        assert "SIGKILL" in row["restart"]["reason"]
        wait_for(
            lambda: (s := supervisor.read(Path(dep.dir)))["state"] == "running" and s["controller_pid"] != killed,
            timeout=60, what="the controller started again",
        )  # fmt: skip
        (entry,) = [h for h in history(project) if h["action"] == "restart"]
        assert entry["result"] == "ok" and "killed by SIGKILL" in entry["reason"]
        wait_for(
            lambda: any(h["action"] == "controller" for h in history(project)),
            timeout=30, what="the new controller taking over the servers",
        )  # fmt: skip
        poller.more(10)
    finally:
        poller.stop()
    assert {code for code, _ in poller.answers} == {200}, "the URL answered all along"
    assert records.get(ctx.ws.registry, dep.id).pid == dep.pid  # the same supervisor


def test_a_controller_that_keeps_dying_is_given_up_on_and_the_deployment_is_failed(restarting):
    project, ctx = restarting
    dep = records.live(ctx.ws.registry, "staging")
    while supervisor.read(Path(dep.dir)).get("state") != "failed":
        kill_controller(dep)
        wait_for(
            lambda: supervisor.read(Path(dep.dir)).get("state") in ("restarting", "failed"),
            timeout=30, what="the supervisor to see it",
        )  # fmt: skip
    row = wait_for(
        lambda: (r := cli(project, "deploy", "status", "--env", "staging", "--json").json()[0])["state"] == "failed" and r,
        timeout=60, what="the deployment failed",
    )  # fmt: skip
    assert "gave up: the controller failed 3 times" in row["error"]
    shown = cli(project, "deploy", "status", "--env", "staging")
    assert "gave up" in shown.stderr
    wait_for(lambda: not left_running(dep), timeout=30, what="no process of it left")
    assert bias(dep.url) is None
    restarts = [h["result"] for h in history(project) if h["action"] == "restart"]
    assert restarts.count("ok") == 2 and restarts[0] == "failed"  # newest first


def test_a_stop_while_the_controller_waits_to_restart_stops_every_process(restarting):
    project, ctx = restarting
    dep = deploy(ctx, "served:1", "staging").deployment
    kill_controller(dep)
    wait_for(
        lambda: supervisor.read(Path(dep.dir)).get("state") == "restarting",
        timeout=10, what="the supervisor waiting to restart it",
    )  # fmt: skip
    done = cli(project, "deploy", "stop", "--env", "staging")
    assert done.returncode == 0, done.output
    assert records.get(ctx.ws.registry, dep.id).state == "stopped"
    assert supervisor.read(Path(dep.dir))["state"] == "stopped"
    assert not left_running(dep) and bias(dep.url) is None

"""kill -9 at the other points of a deployment's life, as an operator would meet them: one HTTP
process of a server, `mllib deploy` between its new version going live and the old one stopped,
`mllib deploy promote` and the controller mid-promotion, `mllib deploy stop` mid-stop. Real
servers on loopback, real HTTP clients, the real `mllib` command killed with SIGKILL. What is
asserted is what a user sees: `deploy status`, `deploy history`, the answers on the URL, and no
process of the deployment left after a stop (found by a look through every process of the host,
independent of the records mllib keeps). Also: every process of a deployment is in its records,
and a stop reads only those."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from mllib.serving import pids
from mllib.serving.clock import FakeClock
from mllib.serving.control import process, records, stopping
from mllib.serving.control.deploy import DeployContext, deploy, stop
from mllib.serving.control.fleet import ORDERS_DIR, read_state
from mllib.serving.control.rollout import Strategy
from mllib.workspace import Workspace
from tests.conftest import wait_for
from tests.serving.conftest import CONFIG, cli, copy_project
from tests.serving.test_process_faults import bias, history

LENIENT = "[rollout]\nmax_p99_increase = 1000\nmin_p99_increase_ms = 600000\n"


@pytest.fixture(scope="module")
def project(trained_template, tmp_path_factory):
    """A project of its own; a canary is judged on errors alone (latency on a loaded machine is
    not what these tests are about)."""
    project = copy_project(trained_template, tmp_path_factory)
    project.write("mllib.toml", CONFIG + LENIENT)
    ctx = DeployContext.create(
        Workspace.find(project.root), clock=FakeClock(time.time()), user="alice"
    )
    yield project, ctx
    for dep in records.running(ctx.ws.registry):
        process.stop(dep.pid, marker=dep.marker, grace_s=5, records=pids.folder_of(dep.dir))


class Poller:
    """One client posting to the URL until stopped; every answer (status, bias) kept."""

    def __init__(self, url: str) -> None:
        self.answers: list[tuple[int, float | None]] = []
        self.errors: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url,))
        self.thread.start()

    def _run(self, url: str) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.done.wait(0.02):
                try:
                    reply = client.post(f"{url}/predict", json={"x": [1]})
                    self.answers.append((reply.status_code, reply.json().get("bias")))
                except (httpx.HTTPError, ValueError) as exc:
                    self.errors.append(repr(exc))

    def more(self, count: int, timeout: float = 60) -> int:
        """Wait for `count` answers more than now; where they start in `answers`."""
        start = len(self.answers)
        wait_for(lambda: len(self.answers) >= start + count, timeout=timeout, what="answers")
        return start

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def left_running(dep: records.Deployment) -> list:
    """Every process of the host carrying the deployment's marker (but the resource tracker
    of multiprocessing, which ends by itself once those holding its pipe have)."""
    found = process.members(dep.pid, dep.marker)
    return [p for p in found if not _tracker(p)]


def _tracker(proc) -> bool:
    try:
        return "resource_tracker" in " ".join(proc.cmdline())
    except psutil.Error:
        return True


def mllib(project, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mllib", *args], cwd=project.root,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def kill_when(proc: subprocess.Popen, condition, *, timeout: float, what: str) -> None:
    """SIGKILL `proc` (a real `mllib` command) once `condition()` holds, or it ended."""
    try:
        wait_for(lambda: condition() or proc.poll() is not None, timeout=timeout, what=what)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def status_row(project) -> dict:
    done = cli(project, "deploy", "status", "--env", "staging", "--json", "--window", "0.1")
    assert done.returncode == 0, done.output
    (row,) = done.json()
    return row


def test_every_process_of_a_deployment_is_recorded_and_a_stop_reads_only_the_records(
    project, monkeypatch
):
    project, ctx = project
    dep = deploy(ctx, "served:1", "staging").deployment
    folder = pids.folder_of(dep.dir)
    roles = {e["role"] for e in pids.entries(folder)}
    assert {"supervisor", "controller", "server", "http"} <= roles, roles
    recorded = {p.pid for p in pids.alive(folder)}
    assert {p.pid for p in left_running(dep)} <= recorded  # all the host has of it

    def looked_through_the_host(*args, **kwargs):
        raise AssertionError("a stop looked through every process of the host")

    monkeypatch.setattr(psutil, "process_iter", looked_through_the_host)
    (stopped,) = stop(ctx, "staging")
    monkeypatch.undo()
    assert stopped.state == "stopped"
    wait_for(lambda: not left_running(dep), timeout=20, what="no process of it left")


def test_a_killed_http_process_is_replaced_and_the_answers_keep_coming(project):
    project, ctx = project
    dep = deploy(ctx, "served:1", "staging").deployment
    state = read_state(Path(dep.dir))
    (killed,) = [p["pid"] for p in state["processes"][state["stable_id"]]]
    poller = Poller(dep.url)
    try:
        poller.more(5)
        os.kill(killed, signal.SIGKILL)
        replaced = wait_for(
            lambda: [r for r in status_row(project)["replicas"] if r["state"] == "ready" and r["pid"] != killed],
            timeout=90, what="a new HTTP process, ready",
        )  # fmt: skip
        before = poller.more(20)
    finally:
        poller.stop()
    assert {code for code, _ in poller.answers[before:]} == {200}
    assert replaced[0]["pid"] in {p.pid for p in pids.alive(pids.folder_of(dep.dir))}
    assert status_row(project)["state"] == "live"


def test_a_deploy_killed_after_its_version_went_live_leaves_one_version_on_the_url(project):
    project, ctx = project
    before = records.live(ctx.ws.registry, "staging")
    deploying = mllib(project, "deploy", "served:2", "--env", "staging")
    kill_when(
        deploying,  # between going live and the old version's stop (or during it)
        lambda: (d := records.live(ctx.ws.registry, "staging")) and d.id != before.id,
        timeout=120, what="the new version live",
    )  # fmt: skip
    row = status_row(project)  # reconciles
    assert (row["state"], row["version"]) == ("live", 2)
    old = records.get(ctx.ws.registry, before.id)
    assert old.state == "stopped" and old.replaced_by == row["deployment_id"]
    assert [d.id for d in records.running(ctx.ws.registry, "staging")] == [row["deployment_id"]]
    assert {bias(row["url"]) for _ in range(20)} == {1.0}
    wait_for(lambda: not left_running(before), timeout=30, what="nothing of the old one left")


def test_promote_and_the_controller_killed_mid_promotion_finish_the_promotion(project):
    project, ctx = project
    before = records.live(ctx.ws.registry, "staging")  # v2
    deploy(ctx, "served:1", "staging", strategy=Strategy("canary", 10))
    wait_for(
        lambda: any(v["name"] == "canary" and v["replicas"] for v in status_row(project)["variants"]),
        timeout=90, what="the canary's replica",
    )  # fmt: skip
    poller = Poller(before.url)
    try:
        promoting = mllib(project, "deploy", "promote", "--env", "staging", "--steps", "50,100", "--interval", "2s")  # fmt: skip
        orders = Path(before.dir) / ORDERS_DIR
        kill_when(  # before or as the controller answers it
            promoting, lambda: any(orders.glob("*.json")), timeout=60, what="the promotion's order"
        )
        wait_for(
            lambda: any(h["action"] == "promote" and h["result"] == "step" for h in history(project)),
            timeout=60, what="the first step, carried out all the same",
        )  # fmt: skip
        controller = read_state(Path(before.dir))["controller_pid"]
        os.kill(controller, signal.SIGKILL)  # between steps: its supervisor starts another
        row = wait_for(
            lambda: (r := status_row(project))["version"] == 1 and len(r["variants"]) == 1 and r,
            timeout=120, what="the promotion finished",
        )  # fmt: skip
        after = poller.more(20)
    finally:
        poller.stop()
    assert row["state"] == "live" and row["variants"][0]["name"] == "stable"
    assert {b for _, b in poller.answers[after:]} == {0.0}  # v1 alone answers
    assert {code for code, _ in poller.answers} == {200}
    assert [d.state for d in records.running(ctx.ws.registry, "staging")] == ["live"]
    assert any(h["action"] == "restart" and h["result"] == "ok" for h in history(project))
    assert any(h["action"] == "promote" and h["result"] == "ok" for h in history(project))


def test_a_stop_killed_mid_stop_is_finished_by_the_next_command(project):
    project, ctx = project
    dep = records.live(ctx.ws.registry, "staging")
    stopper = mllib(project, "deploy", "stop", "--env", "staging")
    kill_when(
        stopper, lambda: (Path(dep.dir) / stopping.STOP_FILE).exists(),
        timeout=60, what="the stop to begin",
    )  # fmt: skip
    row = status_row(project)  # reconciles: finishes the stop
    assert row["state"] == "stopped"
    assert records.running(ctx.ws.registry, "staging") == []
    wait_for(lambda: not left_running(dep), timeout=30, what="no process of it left")
    assert bias(dep.url) is None  # nothing answers on the URL
    stops = [h for h in history(project) if h["action"] == "stop"]
    assert stops, "the stop is in the history"

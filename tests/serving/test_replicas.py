"""Deployments that scale themselves: real server process groups on loopback, a real controller,
real keep-alive HTTP clients, a model whose latency the test raises while it serves.

What a user sees is asserted: `deploy status` (replicas), `deploy history` (scaling events), the
deployment's /metrics, and every answer. No timing is asserted: the controller's decisions are
waited for, never timed (the step-load goals live in `bash scripts/bench.sh scale`).
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

import httpx
import pytest

from mllib.serving import audit
from mllib.serving.clock import FakeClock
from mllib.serving.control import process, records
from mllib.serving.control.deploy import DeployContext, deploy, stop
from mllib.serving.control.status import status
from mllib.workspace import Workspace
from tests.conftest import wait_for
from tests.serving.conftest import CONFIG, copy_project, train

SCALING = """
[serve]
drain_s = 1.0
timeout_s = 10.0
min_replicas = 1
max_replicas = 3
target_inflight = 2
scale_down_after_s = 2
"""


@pytest.fixture(scope="module")
def scaling(trained_template, tmp_path_factory):
    """A project whose version 5 sleeps for what delay.txt says, and a context to deploy it."""
    import time

    project = copy_project(trained_template, tmp_path_factory)
    config = CONFIG.replace(
        "[serve]\nworkers = 2\napi_servers = 2\ndrain_s = 1.0\ntimeout_s = 4.0\n", ""
    )
    project.write("mllib.toml", config + SCALING)
    project.runs["v5"] = train(project, "--delay_file=delay.txt")
    ctx = DeployContext.create(
        Workspace.find(project.root), clock=FakeClock(time.time()), user="alice"
    )
    yield project, ctx
    for env in ("staging", "prod"):
        for dep in records.running(ctx.ws.registry, env):
            process.stop(dep.pid, marker=dep.marker, grace_s=5)


class Traffic:
    """Clients that each keep one connection open and post until stopped; every answer kept."""

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.answers: list[tuple[int, int | None]] = []  # (status, worker pid)
        self.errors: list[str] = []
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.done.is_set():
                try:
                    reply = client.post(f"{self.url}/predict", json={"x": [1]})
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                self.answers.append((reply.status_code, reply.json().get("worker_pid")))

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join()


def ready_replicas(ctx, env: str) -> int:
    (row,) = status(ctx, env, window_s=0.05)
    return sum(1 for r in row["replicas"] if r["state"] == "ready" and r["variant"] == "stable")


def scale_events(ctx, env: str, direction: str) -> list[dict]:
    rows = audit.history(ctx.ws.registry, env=env, limit=500, action="scale")
    return [r for r in rows if r["result"] == direction]


def metric(url: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"{name} {labels} not in /metrics")


def test_a_deployment_scales_up_under_load_and_down_when_quiet_without_a_failed_request(scaling):
    project, ctx = scaling
    (project.root / "delay.txt").write_text("0.02")
    dep = deploy(ctx, "served:5", "staging").deployment
    (row,) = status(ctx, "staging", window_s=0.05)
    assert [r["state"] for r in row["replicas"]] == ["ready"]
    assert row["variants"][0]["name"] == "stable" and row["variants"][0]["weight"] == 100.0

    heavy = Traffic(dep.url, clients=10)  # ~10 in flight: 5 per replica would be needed
    try:
        wait_for(lambda: ready_replicas(ctx, "staging") == 3, timeout=60, what="3 replicas")
        before = len(heavy.answers)
        wait_for(lambda: len(heavy.answers) > before + 60, timeout=60, what="more answers")
    finally:
        heavy.stop()
    up = scale_events(ctx, "staging", "up")
    assert up and "requests in flight" in up[-1]["reason"]
    assert up[-1]["detail"]["variant"] == "stable" and up[-1]["user"] == "mllib"
    assert metric(dep.url, "mllib_scaling_events_total", direction="up", variant="stable") >= 1
    assert metric(dep.url, "mllib_replicas", variant="stable") == 3
    # Clients kept their connections open: some were handed to the new replicas.
    late = Counter(pid for _, pid in heavy.answers[-60:])
    assert len(late) >= 2, late

    light = Traffic(dep.url, clients=1)  # a steady trickle while it scales back down
    try:
        wait_for(lambda: ready_replicas(ctx, "staging") == 1, timeout=60, what="back to 1")
    finally:
        light.stop()
    assert len(scale_events(ctx, "staging", "down")) == 2  # 3 → 2 → 1, one at a time
    answers = heavy.answers + light.answers
    assert heavy.errors == light.errors == []
    assert {code for code, _ in answers} == {200}, Counter(code for code, _ in answers)


def test_a_killed_controller_is_started_again_and_takes_over_its_servers(scaling):
    project, ctx = scaling
    (project.root / "delay.txt").write_text("0")
    dep = records.live(ctx.ws.registry, "staging")
    (row,) = status(ctx, "staging", window_s=0.05)
    server_pids = {r["pid"] for r in row["replicas"] if r["state"] == "ready"}
    traffic = Traffic(dep.url, clients=2)
    try:
        os.kill(dep.pid, signal.SIGKILL)
        wait_for(lambda: traffic.answers, what="answers")
        (row,) = status(ctx, "staging", window_s=0.05)  # reconciles: a new controller
        after = records.live(ctx.ws.registry, "staging")
        assert after.id == dep.id and after.pid != dep.pid and row["state"] == "live"
        wait_for(
            lambda: audit.history(ctx.ws.registry, env="staging", action="controller"),
            what="the restart in the history",
        )
        before = len(traffic.answers)
        wait_for(lambda: len(traffic.answers) > before + 20, what="answers after the restart")
    finally:
        traffic.stop()
    (row,) = status(ctx, "staging", window_s=0.05)
    serving = {r["pid"] for r in row["replicas"] if r["state"] == "ready"}
    assert serving == server_pids, "the same servers go on serving"
    assert traffic.errors == [] and {code for code, _ in traffic.answers} == {200}
    (stopped,) = stop(ctx, "staging")
    assert not process.members(stopped.pid, stopped.marker)
    assert not any(process.members(pid, stopped.marker) for pid in server_pids)

"""`mllib loadtest`: load from several processes against a real staging deployment on loopback,
the server's own figures read from its /metrics beside the client's, fixed rates and ramps
(an open model), and the guards that were already there."""

from __future__ import annotations

import time
from array import array
from collections import Counter

import pytest

from mllib.errors import PolicyError, UsageError
from mllib.serving.clock import FakeClock
from mllib.serving.control import loadgen, process, records
from mllib.serving.control.deploy import DeployContext, deploy
from mllib.serving.control.loadtest import loadtest, server_figures, summarize
from mllib.workspace import Workspace
from tests.serving.conftest import cli, copy_project


@pytest.fixture(scope="module")
def staging(trained_template, tmp_path_factory):
    project = copy_project(trained_template, tmp_path_factory)
    ctx = DeployContext.create(
        Workspace.find(project.root), clock=FakeClock(time.time()), user="alice"
    )
    deploy(ctx, "served:1", "staging")
    yield project, ctx
    for dep in records.running(ctx.ws.registry, "staging"):
        process.stop(dep.pid, marker=dep.marker, grace_s=5)


def test_the_server_counts_every_request_the_client_sent(staging):
    _, ctx = staging
    result = loadtest(ctx, "staging", duration_s=2.0, concurrency=6, workers=2)
    assert result.client["workers"] == 2 and 0 <= result.client["cpu_share"] <= 1.5
    assert result.statuses == {"200": result.requests} and result.errors == 0
    server = result.server
    assert server["reachable"] and server["requests"] == result.requests and server["errors"] == 0
    assert 0 < server["p50_ms"] <= server["p99_ms"]
    assert result.p50_ms <= result.p95_ms <= result.p99_ms <= result.max_ms
    assert sum(count for _, count in result.histogram) == result.requests
    assert result.judged_on in ("client", "server") and result.passed, result.failed_checks
    row = ctx.ws.registry.query("SELECT * FROM loadtests WHERE id = ?", (result.id,))[0]
    assert row["judged_on"] == result.judged_on and '"requests"' in row["server"]


def test_a_fixed_rate_and_a_ramp_send_their_scheduled_arrivals(staging):
    _, ctx = staging
    fixed = loadtest(ctx, "staging", duration_s=2.0, rps=60, workers=2)
    assert fixed.mode == "rps" and fixed.target_rps == 60
    assert fixed.requests + fixed.skipped == 2 * len(loadgen.Load("", b"", {}, 2.0, rate_from=30, rate_to=30).arrivals(1.0))  # fmt: skip
    ramp = loadtest(ctx, "staging", duration_s=2.0, rate="20:100", workers=1)
    assert (ramp.mode, ramp.rate_from, ramp.target_rps) == ("ramp", 20, 100)
    assert ramp.requests + ramp.skipped == 119  # the area under the ramp: (20 + 100) / 2 × 2 s
    assert ramp.server["requests"] == ramp.requests


def test_the_arrivals_of_a_ramp_follow_its_rate():
    load = loadgen.Load("http://127.0.0.1:1", b"{}", {}, 10.0, rate_from=10, rate_to=100)
    times = load.arrivals(1.0)
    assert len(times) == 549  # (10 + 100) / 2 × 10 s, the last one before the end
    assert 0.08 < times[1] - times[0] < 0.1  # ~10 requests/s at the start
    assert 0.0095 < times[-1] - times[-2] < 0.0105  # ~100 requests/s at the end
    assert len(load.arrivals(0.5)) == 274  # a worker's half of it


def test_a_cpu_bound_client_is_said_to_be_and_the_server_figures_decide(staging):
    _, ctx = staging
    dep = records.live(ctx.ws.registry, "staging")
    load = loadgen.Load(dep.url, b"{}", {}, 1.0, concurrency=2)
    slow = array("d", [0.5] * 100)  # the client saw 500 ms, the server 2 ms
    tally = loadgen.Tally(Counter({"200": 100}), slow)
    server = {"reachable": True, "requests": 100, "errors": 0, "error_rate": 0.0,
              "p50_ms": 2.0, "p99_ms": 2.4}  # fmt: skip
    settings = ctx.settings.loadtest
    busy = summarize(load, loadgen.Generated(tally, 2, 0.97), dep, settings, server, 40.0)
    assert busy.client["bound"] and busy.judged_on == "server" and busy.passed
    calm = summarize(load, loadgen.Generated(tally, 2, 0.2), dep, settings, server, 40.0)
    assert not calm.client["bound"] and calm.judged_on == "client"
    strict = settings.__class__(**{**settings.__dict__, "pass_max_p99_ms": 100})
    assert not summarize(load, loadgen.Generated(tally, 2, 0.2), dep, strict, server, 40.0).passed
    assert summarize(load, loadgen.Generated(tally, 2, 0.1), dep, strict, server, 99.0).passed
    assert server_figures(None, None)["reachable"] is False


def test_the_guards_stay(staging):
    _, ctx = staging
    with pytest.raises(PolicyError, match="load tests never target prod"):
        loadtest(ctx, "prod", duration_s=1)
    with pytest.raises(UsageError, match="one of --rate, --rps and --concurrency"):
        loadtest(ctx, "staging", rate="10", concurrency=2)
    with pytest.raises(UsageError, match="at most 2000"):
        loadtest(ctx, "staging", rate="10:5000")
    with pytest.raises(UsageError, match="FROM:TO"):
        loadtest(ctx, "staging", rate="fast")


def test_the_command_reports_both_sides_as_json(staging):
    project, _ = staging
    result = cli(
        project, "loadtest", "--env", "staging", "--rate", "40", "--duration", "1s", "--json"
    )
    assert result.returncode == 0, result.output
    report = result.json()
    assert report["mode"] == "rps" and report["server"]["reachable"]
    assert set(report["client"]) == {"workers", "cpu_share", "host_cpu_percent", "bound"}
    text = cli(project, "loadtest", "--env", "staging", "-c", "2", "--duration", "1")
    assert text.returncode == 0 and "server (its /metrics)" in text.stdout
    piped = cli(
        project, "loadtest", "--env", "staging", "-c", "1", "--duration", "1", "--input", "-",
        "--json", input='{"x": [1, 2]}',
    )  # fmt: skip
    assert piped.returncode == 0, piped.output
    assert piped.json()["server"]["reachable"] and piped.json()["requests"] > 0
    refused = cli(project, "loadtest", "--env", "staging", "--duration", "soon")
    assert refused.returncode == 2 and "--duration must be a duration" in refused.output

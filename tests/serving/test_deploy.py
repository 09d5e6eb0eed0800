"""Deployments end to end through the library: real server process groups on loopback ports, real
HTTP, the real registry, and a clock the test moves by hand for the deploy rules.

The tests run in order on one project, as a team would: staging first, then prod, keys, new
versions, a failed deploy, a rollback, an override, and stops that leave nothing running. They
run once per inference mode (inline: the HTTP processes predict; worker: LitServe workers do),
each on its own copy of the project.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from mllib.errors import NotFoundError, PolicyError, UsageError
from mllib.serving import audit
from mllib.serving.clock import FakeClock
from mllib.serving.control import keys, policy, process, records
from mllib.serving.control.deploy import DeployContext, DeployFailedError, deploy, rollback, stop
from mllib.serving.control.loadtest import loadtest
from mllib.serving.control.status import log_source, status
from mllib.serving.spec import INFERENCE_MODES
from mllib.workspace import Workspace
from tests.conftest import wait_for
from tests.serving.conftest import copy_project


@pytest.fixture(scope="module", params=INFERENCE_MODES)
def ctx(request, trained_template, tmp_path_factory):
    project = copy_project(trained_template, tmp_path_factory)
    context = DeployContext.create(
        Workspace.find(project.root), clock=FakeClock(time.time()), user="alice"
    )
    rules = dataclasses.replace(context.settings.deploy, inference=request.param)
    context = dataclasses.replace(
        context, settings=dataclasses.replace(context.settings, deploy=rules)
    )
    yield context
    for env in ("staging", "prod"):  # whatever a failed test left running
        for dep in records.running(context.ws.registry, env):
            process.stop(dep.pid, marker=dep.id, grace_s=5)


def post(url: str, body: dict, key: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/predict", json=body, headers=headers, timeout=10)


def actions(ctx, **match) -> list[dict]:
    return [
        r
        for r in audit.history(ctx.ws.registry, limit=500)
        if all(r[k] == v for k, v in match.items())
    ]


def test_prod_refuses_a_version_that_did_not_pass_staging_and_names_the_commands(ctx):
    with pytest.raises(PolicyError) as refused:
        deploy(ctx, "served:1", "prod")
    assert "served v1 has not passed a load test on staging" in refused.value.message
    assert refused.value.hint.splitlines()[:4] == [
        "Run, in order:",
        "  mllib deploy served:1 --env staging",
        "  mllib loadtest --env staging",
        "  mllib deploy served:1 --env prod",
    ]
    assert refused.value.exit_code == 5
    assert actions(ctx, env="prod", action="deploy", result="refused")
    assert records.live(ctx.ws.registry, "prod") is None


def test_staging_serves_without_a_key_and_status_reports_it(ctx):
    outcome = deploy(ctx, "served:1", "staging")
    dep = outcome.deployment
    assert dep.state == "live" and dep.version == 1
    assert post(dep.url, {"x": [1]}).json()["y"] == [2.0]
    (row,) = status(ctx, "staging", window_s=0.2)
    assert {k: row[k] for k in ("env", "url", "model", "version", "workers", "state")} == {
        "env": "staging",
        "url": dep.url,
        "model": "served",
        "version": 1,
        "workers": 1,
        "state": "live",
    }


def test_redeploying_the_same_artifact_is_refused_as_a_noop(ctx):
    live = records.live(ctx.ws.registry, "staging")
    outcome = deploy(ctx, "served:1", "staging")
    assert outcome.noop and outcome.deployment.id == live.id
    assert process.members(live.pid, live.id), "the running server was left alone"
    assert actions(ctx, env="staging", result="noop")


def test_loadtests_refuse_prod_and_record_staging_results(ctx):
    with pytest.raises(PolicyError, match="load tests never target prod"):
        loadtest(ctx, "prod", duration_s=1)
    result = loadtest(ctx, "staging", duration_s=1.0, concurrency=4)
    assert result.passed, result.failed_checks
    assert result.requests >= ctx.settings.loadtest.pass_min_requests and result.errors == 0
    assert result.p50_ms <= result.p95_ms <= result.p99_ms <= result.max_ms
    assert sum(count for _, count in result.histogram) == result.requests
    row = ctx.ws.registry.query("SELECT * FROM loadtests WHERE id = ?", (result.id,))[0]
    assert (
        row["passed"] == 1 and row["artifact"] == records.live(ctx.ws.registry, "staging").artifact
    )
    strict = dataclasses.replace(
        ctx.settings, loadtest=dataclasses.replace(ctx.settings.loadtest, pass_min_requests=10**9)
    )
    failing = loadtest(
        dataclasses.replace(ctx, settings=strict), "staging", duration_s=0.3, concurrency=1
    )
    assert not failing.passed and "needed" in failing.failed_checks[0]


def test_prod_needs_a_key_once_the_version_passed_staging(ctx):
    dep = deploy(ctx, "served:1", "prod").deployment
    assert dep.api_servers == 2
    missing = post(dep.url, {"x": [1]})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "mllib keys create --env prod" in missing.json()["hint"]
    key = keys.create_key(ctx.ws.registry, ctx.clock, ctx.settings.keys, env="prod", user="alice")
    assert post(dep.url, {"x": [1]}, key.token).status_code == 200
    wrong = key.token[:-4] + "abcd"
    assert post(dep.url, {"x": [1]}, wrong).status_code == 401
    staging_key = keys.create_key(
        ctx.ws.registry, ctx.clock, ctx.settings.keys, env="staging", user="alice"
    )
    assert post(dep.url, {"x": [1]}, staging_key.token).status_code == 401
    stored = ctx.ws.registry.query("SELECT * FROM api_keys WHERE id = ?", (key.id,))[0]
    assert key.token.split("_", 2)[2] not in str(stored), "only a hash of the secret is stored"


def test_a_burst_from_one_key_gets_429_while_another_key_keeps_getting_200(ctx):
    url = records.live(ctx.ws.registry, "prod").url
    greedy = keys.create_key(
        ctx.ws.registry, ctx.clock, ctx.settings.keys, env="prod", user="bob", rps=2, burst=4
    )
    polite = keys.create_key(
        ctx.ws.registry, ctx.clock, ctx.settings.keys, env="prod", user="carol", rps=1000
    )
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:  # new connections: both API servers take part
        greedy_replies = list(pool.map(lambda _: post(url, {"x": [1]}, greedy.token), range(40)))
        polite_replies = list(pool.map(lambda _: post(url, {"x": [1]}, polite.token), range(20)))
    elapsed = time.monotonic() - started
    granted = sum(r.status_code == 200 for r in greedy_replies)
    limited = [r for r in greedy_replies if r.status_code == 429]
    others = [(r.status_code, r.text) for r in greedy_replies if r.status_code not in (200, 429)]
    assert granted + len(limited) == 40, others
    # One bucket shared by both API servers: the burst plus what refilled, never twice that.
    assert 4 <= granted <= 4 + 2 * elapsed + 1
    assert int(limited[0].headers["retry-after"]) >= 1
    assert "mllib loadtest --env staging" in limited[0].json()["hint"]
    assert [r.status_code for r in polite_replies] == [200] * 20
    flagged = wait_for(
        lambda: actions(ctx, action="key_burst", key_id=greedy.id), what="the burst flag"
    )
    assert flagged[0]["result"] == "flagged" and flagged[0]["env"] == "prod"
    assert not actions(ctx, action="key_burst", key_id=polite.id)


def test_a_revoked_key_is_refused_within_the_refresh_interval(ctx):
    url = records.live(ctx.ws.registry, "prod").url
    key = keys.create_key(ctx.ws.registry, ctx.clock, ctx.settings.keys, env="prod", user="alice")
    assert post(url, {"x": [1]}, key.token).status_code == 200
    keys.revoke_key(ctx.ws.registry, ctx.clock, key.id, user="alice")
    refused = wait_for(
        lambda: (r := post(url, {"x": [1]}, key.token)).status_code == 401 and r,
        timeout=5,
        what="revoke",
    )
    assert refused.json()["error"] == "This API key was revoked."


def test_a_new_version_takes_over_the_same_url_without_a_refused_request(ctx):
    old = records.live(ctx.ws.registry, "staging")
    seen, errors, done = [], [], threading.Event()

    def poll():
        while not done.is_set():
            try:
                seen.append(post(old.url, {"x": [1]}).json()["bias"])
            except (httpx.HTTPError, KeyError) as exc:
                errors.append(repr(exc))

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        new = deploy(ctx, "served:2", "staging").deployment
        wait_for(lambda: seen and seen[-1] == 1.0, what="the new version's answers")
    finally:
        done.set()
        poller.join()
    assert new.url == old.url
    assert errors == []
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert records.get(ctx.ws.registry, old.id).state == "stopped"
    assert records.get(ctx.ws.registry, old.id).replaced_by == new.id
    assert not process.members(old.pid, old.id)


def test_a_version_that_fails_to_load_is_recorded_and_the_old_one_keeps_serving(ctx):
    before = records.live(ctx.ws.registry, "staging")
    with pytest.raises(DeployFailedError) as failed:
        deploy(ctx, "served:3", "staging")
    assert "RuntimeError: this model refuses to load" in failed.value.message
    assert "served v2 still serves staging" in failed.value.message
    attempt = records.latest(ctx.ws.registry, "staging")
    assert attempt.state == "failed" and attempt.version == 3
    assert not process.members(attempt.pid, attempt.id)
    assert records.live(ctx.ws.registry, "staging").id == before.id
    assert post(before.url, {"x": [1]}).status_code == 200


def test_rollback_puts_the_previous_version_back_and_starts_a_cooldown(ctx):
    assert loadtest(ctx, "staging", duration_s=0.5, concurrency=2).passed  # v2 passes staging
    deploy(ctx, "served:2", "prod")
    key = keys.create_key(ctx.ws.registry, ctx.clock, ctx.settings.keys, env="prod", user="alice")
    url = records.live(ctx.ws.registry, "prod").url
    assert post(url, {"x": [1]}, key.token).json()["bias"] == 1.0
    outcome = rollback(ctx, "prod", reason="v2 answers look wrong")
    assert outcome.deployment.version == 1
    assert outcome.cooldown_s == ctx.settings.deploy.cooldown_base_s
    assert post(url, {"x": [1]}, key.token).json()["bias"] == 0.0
    with pytest.raises(PolicyError) as refused:
        deploy(ctx, "served:2", "prod")
    assert (
        "alice is in a cooldown for prod deploys of served for another 10m00s"
        in refused.value.message
    )
    ctx.clock.advance(300)
    with pytest.raises(PolicyError, match="for another 5m00s"):
        deploy(ctx, "served:2", "prod")
    assert actions(ctx, env="prod", action="rollback", result="ok")


def test_force_overrides_the_rules_only_with_a_reason_and_is_audited(ctx):
    with pytest.raises(UsageError, match="--force needs --reason"):
        deploy(ctx, "served:2", "prod", force=True)
    outcome = deploy(ctx, "served:2", "prod", force=True, reason="hotfix approved by Dana")
    assert outcome.forced == ["cooldown"]
    assert outcome.deployment.version == 2 and outcome.deployment.forced == 1
    (forced,) = actions(ctx, env="prod", result="forced")
    assert forced["reason"] == "hotfix approved by Dana"
    assert forced["detail"] == {"overrode": ["cooldown"]}
    admins_only = dataclasses.replace(
        ctx.settings, deploy=dataclasses.replace(ctx.settings.deploy, admins=["dana"])
    )
    with pytest.raises(PolicyError, match="only dana may override"):
        deploy(
            dataclasses.replace(ctx, settings=admins_only),
            "served:1",
            "prod",
            force=True,
            reason="x",
        )


def test_status_reads_live_traffic_from_the_servers_metrics(ctx):
    dep = records.live(ctx.ws.registry, "prod")
    key = keys.create_key(
        ctx.ws.registry, ctx.clock, ctx.settings.keys, env="prod", user="alice", rps=1000
    )
    done, answered = threading.Event(), []

    def traffic():
        with httpx.Client(headers={"authorization": f"Bearer {key.token}"}) as client:
            while not done.is_set():
                answered.append(client.post(f"{dep.url}/predict", json={"x": [1]}).status_code)

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        wait_for(lambda: answered, what="traffic to flow")
        (row,) = status(ctx, "prod", window_s=1.0)
    finally:
        done.set()
        thread.join()
    stats = row["stats"]
    assert row["state"] == "live" and row["version"] == 2 and row["api_servers"] == 2
    assert stats["window"] == "window" and stats["rps"] > 0
    assert set(answered) == {200}
    assert 0 < stats["p50_ms"] <= stats["p99_ms"]
    assert stats["error_rate"] == 0.0


def test_deployment_logs_are_one_json_line_per_request(ctx):
    import orjson

    path, alive = log_source(ctx, "prod")
    assert alive()
    refused = post(records.live(ctx.ws.registry, "prod").url, {"x": [1]})
    assert refused.status_code == 401
    request_id = refused.json()["error_id"]  # the request's id, in its log line too
    wait_for(lambda: request_id.encode() in path.read_bytes(), what="the request's log line")
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.startswith(b"{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert requests
    for line in requests:
        assert {
            "time",
            "env",
            "model",
            "version",
            "status",
            "latency_ms",
            "key_id",
            "request_id",
        } <= set(line)
        assert line["env"] == "prod" and line["model"] == "served" and line["version"] == "2"
    assert any(line["status"] == 200 and line["key_id"] for line in requests)
    (mine,) = [line for line in requests if line["request_id"] == request_id]
    assert mine["status"] == 401 and mine["key_id"] is None


def test_stop_ends_every_process_even_when_a_request_hangs(ctx, tmp_path):
    prod = records.live(ctx.ws.registry, "prod")
    (stopped,) = stop(ctx, "prod")
    assert stopped.state == "stopped" and not process.members(prod.pid, prod.id)
    staging = records.live(ctx.ws.registry, "staging")
    started, cut = tmp_path / "in-predict", []
    body = {"x": [1], "sleep": 600, "started": str(started)}

    def hang() -> None:
        try:
            httpx.post(f"{staging.url}/predict", json=body, timeout=300)
        except httpx.HTTPError as exc:
            cut.append(exc)

    hanging = threading.Thread(target=hang)
    hanging.start()
    wait_for(started.exists, what="the request to reach predict()")
    impatient = dataclasses.replace(
        ctx.settings, deploy=dataclasses.replace(ctx.settings.deploy, stop_grace_s=0.3)
    )
    stop(dataclasses.replace(ctx, settings=impatient), "staging")
    assert not process.members(staging.pid, staging.id)
    hanging.join(timeout=60)
    assert not hanging.is_alive() and cut, "stop left the hanging request's server running"
    assert not isinstance(cut[0], httpx.TimeoutException), "stop cut the request, not a timeout"
    with pytest.raises(NotFoundError, match="Nothing is running on staging"):
        stop(ctx, "staging")
    assert [r["action"] for r in actions(ctx, result="ok", action="stop")] == ["stop", "stop"]


def test_cooldown_doubles_with_each_strike_is_capped_and_resets_after_a_quiet_period(ctx):
    reg, clock, rules = ctx.ws.registry, FakeClock(2_000_000_000), ctx.settings.deploy
    base = rules.cooldown_base_s
    lengths = [policy.strike(reg, clock, rules, "erin", "served") for _ in range(4)]
    assert lengths == [base, 2 * base, 4 * base, 8 * base]
    refusal = policy.cooldown_check(reg, clock, "erin", "served")
    assert "after 4 rollbacks or failed deploys in a row" in refusal.message
    assert policy.cooldown_check(reg, clock, "erin", "other-model") is None
    for _ in range(10):
        capped = policy.strike(reg, clock, rules, "erin", "served")
    assert capped == rules.cooldown_max_s
    clock.advance(rules.cooldown_max_s + 1)
    assert policy.cooldown_check(reg, clock, "erin", "served") is None
    clock.advance(rules.quiet_period_s)
    assert policy.strike(reg, clock, rules, "erin", "served") == base


def test_prod_deploys_draw_from_a_per_user_budget_that_refills(ctx):
    reg, clock = ctx.ws.registry, FakeClock(2_000_000_000)
    rules = dataclasses.replace(ctx.settings.deploy, budget_burst=2.0, budget_refill_s=3600.0)
    assert policy.budget_check(reg, clock, rules, "frank") is None
    policy.draw(reg, clock, rules, "frank")
    policy.draw(reg, clock, rules, "frank")
    refusal = policy.budget_check(reg, clock, rules, "frank")
    assert "the next prod deploy is possible in 1h00m" in refusal.message
    assert policy.budget_check(reg, clock, rules, "grace") is None  # per user
    clock.advance(1800)
    assert "in 30m00s" in policy.budget_check(reg, clock, rules, "frank").message
    clock.advance(1800)
    assert policy.budget_check(reg, clock, rules, "frank") is None


def test_one_deploy_rollback_or_stop_of_an_environment_at_a_time(ctx):
    from mllib.errors import MllibError
    from mllib.serving.control.deploy import env_lock

    with env_lock(ctx.ws, "staging"), pytest.raises(MllibError, match="of staging is in progress"):
        deploy(ctx, "served:1", "staging")
    with env_lock(ctx.ws, "prod"), pytest.raises(MllibError, match="of prod is in progress"):
        stop(ctx, "prod")

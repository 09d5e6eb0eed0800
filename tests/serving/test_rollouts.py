"""Canaries, A/B tests and shadows on a prod deployment: real servers on loopback, real HTTP
clients with real API keys, a candidate whose latency the test raises while it serves.

The tests run in order on one project: a canary's share and its figures in `deploy status`, a
promotion in steps, an A/B test sticky per caller with an admin override, a shadow whose answers
no client sees, a rollback by hand, and a bad canary that rolls itself back with no failed
request, a strike under the deploy rules, and promotion refused while a canary is failing.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest

from mllib.errors import MllibError, PolicyError, UsageError
from mllib.serving import audit
from mllib.serving.clock import FakeClock
from mllib.serving.control import keys, process, records
from mllib.serving.control.deploy import DeployContext, deploy, rollback
from mllib.serving.control.promote import promote
from mllib.serving.control.rollout import Strategy
from mllib.serving.control.status import status
from mllib.workspace import Workspace
from tests.conftest import wait_for
from tests.serving.conftest import CONFIG, copy_project, train

ROLLOUT = """
[rollout]
window_s = 2.0
min_requests = 30
promote_interval_s = 1.0
"""


@pytest.fixture(scope="module")
def prod(trained_template, tmp_path_factory):
    """v1 live on prod (1 replica), keys for it, and v5: v2's model, slowed by slow.txt."""
    project = copy_project(trained_template, tmp_path_factory)
    config = CONFIG.replace("[deploy.prod]\nworkers = 2\napi_servers = 2\n", "")
    project.write("mllib.toml", config + ROLLOUT)
    project.runs["v5"] = train(project, "--bias=2", "--delay_file=slow.txt")
    ctx = DeployContext.create(
        Workspace.find(project.root), clock=FakeClock(time.time()), user="alice"
    )
    force = dict(force=True, reason="rollout tests")
    deploy(ctx, "served:1", "prod", **force)
    made = keys.create_key(ctx.ws.registry, ctx.clock, ctx.settings.keys, env="prod", user="alice", rps=1e6)  # fmt: skip
    admin = keys.create_key(
        ctx.ws.registry, ctx.clock, ctx.settings.keys, env="prod", user="alice", rps=1e6, admin=True
    )
    yield project, ctx, made.token, admin.token, force
    for dep in records.running(ctx.ws.registry, "prod"):
        process.stop(dep.pid, marker=dep.marker, grace_s=5)


def post(client: httpx.Client, url: str, key: str, **headers: str) -> httpx.Response:
    return client.post(
        f"{url}/predict", json={"x": [1]}, headers={"authorization": f"Bearer {key}", **headers}
    )


class Poller:
    """One client posting until stopped (`pause` s between requests); every answer (status,
    bias) kept."""

    def __init__(self, url: str, key: str, pause: float = 0.0) -> None:
        self.answers: list[tuple[int, float | None]] = []
        self.errors: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url, key, pause))
        self.thread.start()

    def _run(self, url: str, key: str, pause: float) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.done.wait(pause):
                try:
                    reply = post(client, url, key)
                    self.answers.append((reply.status_code, reply.json().get("bias")))
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def variants(ctx) -> dict[str, dict]:
    (row,) = status(ctx, "prod", window_s=0.2)
    return {v["name"]: v for v in row["variants"]}


def events(ctx, action: str, result: str | None = None) -> list[dict]:
    rows = audit.history(ctx.ws.registry, env="prod", action=action, limit=500)
    return [r for r in rows if result is None or r["result"] == result]


def test_a_canary_takes_its_share_and_status_shows_both_variants(prod):
    _, ctx, key, _, force = prod
    url = records.live(ctx.ws.registry, "prod").url
    outcome = deploy(ctx, "served:2", "prod", strategy=Strategy.of(canary=30), **force)
    assert outcome.candidate["mode"] == "canary" and outcome.candidate["weight"] == 30
    with httpx.Client() as client:
        seen = Counter(post(client, url, key).json()["bias"] for _ in range(400))
    assert set(seen) == {0.0, 1.0} and 60 <= seen[1.0] <= 180, seen  # ~30% of 400
    found = variants(ctx)
    assert (found["stable"]["version"], found["stable"]["weight"]) == (1, 70.0)
    assert (found["canary"]["version"], found["canary"]["weight"]) == (2, 30.0)
    assert found["canary"]["replicas"] == 1 and found["canary"]["mode"] == "canary"
    assert found["canary"]["hosts"] == {"local": 1}  # on this machine: no gateway apart
    assert found["canary"]["stats"]["requests_total"] == seen[1.0]
    assert found["stable"]["stats"]["requests_total"] >= seen[0.0]
    with pytest.raises(MllibError, match="already being rolled out"):
        deploy(ctx, "served:4", "prod", strategy=Strategy.of(canary=5), **force)
    (row,) = status(ctx, "prod", window_s=0.05)
    assert sorted({r["variant"] for r in row["replicas"]}) == ["canary", "stable"]
    assert row["gateway"] == []  # the stable server here is a replica, not only a gateway


def test_promotion_moves_to_every_request_in_steps_without_a_failed_request(prod):
    _, ctx, key, _, _ = prod
    before = records.live(ctx.ws.registry, "prod")
    poller = Poller(before.url, key)
    try:
        answer = promote(ctx, "prod", steps="60,100", interval_s=1.0)
        assert answer["weight"] == 60 and answer["steps_left"] == [100.0]
        wait_for(lambda: records.live(ctx.ws.registry, "prod").version == 2, timeout=90, what="v2")
        wait_for(lambda: set(variants(ctx)) == {"stable"}, what="one variant")
        done = len(poller.answers)
        wait_for(lambda: len(poller.answers) > done + 30, what="answers after the promotion")
    finally:
        poller.stop()
    assert poller.errors == [] and {code for code, _ in poller.answers} == {200}
    assert {bias for _, bias in poller.answers[-20:]} == {1.0}
    after = records.live(ctx.ws.registry, "prod")
    assert after.action == "promote" and after.previous_id == before.id and after.url == before.url
    assert records.get(ctx.ws.registry, before.id).replaced_by == after.id
    steps = [r["detail"]["weight"] for r in events(ctx, "promote", "step")]
    assert steps == [60]
    (done,) = [r for r in events(ctx, "promote", "ok") if r["user"] == "alice" and r["version"] == 2 and "is stable" in (r["reason"] or "")]  # fmt: skip
    assert done["deployment_id"] == after.id


def test_an_ab_test_keeps_each_caller_on_one_side_and_an_admin_key_may_choose(prod):
    _, ctx, key, admin, force = prod
    url = records.live(ctx.ws.registry, "prod").url
    with pytest.raises(UsageError, match="--sticky-by must be 'key' or 'header:NAME'"):
        Strategy.of(ab=50, sticky_by="cookie")
    deploy(ctx, "served:1", "prod", strategy=Strategy.of(ab=50, sticky_by="header:X-User"), **force)
    sides: dict[str, set] = {}
    with httpx.Client() as client:
        for user in range(30):
            for _ in range(4):
                bias = post(client, url, key, **{"X-User": f"user-{user}"}).json()["bias"]
                sides.setdefault(f"user-{user}", set()).add(bias)
        assert all(len(seen) == 1 for seen in sides.values()), sides
        assert {b for seen in sides.values() for b in seen} == {0.0, 1.0}
        refused = post(client, url, key, **{"X-Mllib-Variant": "canary"})
        assert refused.status_code == 403 and "admin" in refused.json()["error"]
        forced = {post(client, url, admin, **{"X-Mllib-Variant": "canary"}).json()["bias"] for _ in range(10)}  # fmt: skip
        assert forced == {0.0}  # the candidate here is v1: its bias is 0
    assert variants(ctx)["canary"]["sticky_by"] == "header:x-user"
    outcome = rollback(ctx, "prod", reason="enough data")
    assert outcome.rolled_back == "served v1" and outcome.deployment.version == 2
    assert set(variants(ctx)) == {"stable"}
    assert events(ctx, "rollback", "ok")


def test_a_shadow_gets_copies_whose_answers_no_client_sees(prod):
    _, ctx, key, _, force = prod
    url = records.live(ctx.ws.registry, "prod").url
    deploy(ctx, "served:4", "prod", strategy=Strategy.of(shadow=100), **force)  # past a cooldown
    with httpx.Client() as client:
        seen = {post(client, url, key).json()["bias"] for _ in range(80)}
    assert seen == {1.0}  # v2 answers every client; v4's answers are thrown away
    shadow = wait_for(
        lambda: (v := variants(ctx).get("shadow")) and v["judged"].get("shadow", {}).get("compared") and v,
        what="compared shadow answers",
    )  # fmt: skip
    figures = shadow["judged"]["shadow"]
    assert figures["differed"] == figures["compared"]  # v4 answers with its own pid and bias
    assert shadow["stats"]["requests_total"] >= 60
    rollback(ctx, "prod", reason="seen enough")


def test_a_bad_canary_rolls_itself_back_with_no_failed_request_and_is_a_strike(prod):
    project, ctx, key, _, force = prod
    (project.root / "slow.txt").write_text("0")
    url = records.live(ctx.ws.registry, "prod").url
    deploy(ctx, "served:5", "prod", strategy=Strategy.of(canary=50), **force)
    pollers = [Poller(url, key) for _ in range(6)]  # enough canary requests to judge it by
    answers = lambda: [a for p in pollers for a in p.answers]  # noqa: E731
    try:
        wait_for(lambda: {b for _, b in answers()[-100:]} == {1.0, 2.0}, what="both answer")
        (project.root / "slow.txt").write_text("0.08")  # v5 turns slow
        rolled = wait_for(lambda: events(ctx, "rollback", "auto"), timeout=60, what="rollback")
        later = [len(p.answers) for p in pollers]
        wait_for(lambda: sum(len(p.answers) for p in pollers) > sum(later) + 60, what="answers")
    finally:
        for poller in pollers:
            poller.stop()
    assert "p99" in rolled[0]["reason"] and rolled[0]["user"] == "alice"
    assert rolled[0]["detail"]["cooldown_s"] >= ctx.settings.deploy.cooldown_base_s
    assert [e for p in pollers for e in p.errors] == []
    assert {code for code, _ in answers()} == {200}
    after = [b for p, n in zip(pollers, later, strict=True) for _, b in p.answers[n + 2 :]]
    assert set(after) == {1.0}  # stable answers every request again
    assert set(variants(ctx)) == {"stable"}
    with pytest.raises(PolicyError, match="cooldown"):
        deploy(ctx, "served:5", "prod", strategy=Strategy.of(canary=10))


def test_promotion_is_refused_while_the_canary_is_failing(prod):
    project, ctx, key, _, force = prod
    url = records.live(ctx.ws.registry, "prod").url
    (project.root / "slow.txt").write_text("0.3")  # slower than the 100 ms objective × 1.5
    deploy(ctx, "served:5", "prod", strategy=Strategy.of(canary=50), **force)
    # A trickle: its canary requests stay under min_requests (30) in any 2 s window, so the
    # slow canary is failing but not yet judged enough to roll back.
    poller = Poller(url, key, pause=0.1)
    try:
        failing = wait_for(
            lambda: variants(ctx)["canary"].get("failing"), timeout=60, what="failing"
        )
        assert "p99" in failing
        with pytest.raises(MllibError, match="the canary is failing"):
            promote(ctx, "prod", steps="100", interval_s=0)
    finally:
        poller.stop()
    assert events(ctx, "promote", "refused")
    assert "canary" in variants(ctx)  # refused, not rolled back
    rollback(ctx, "prod", reason="done")

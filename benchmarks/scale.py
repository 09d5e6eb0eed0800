"""A prod deployment scaling itself and rolling out, measured end to end: a real controller,
real replicas, real keep-alive HTTP clients with real API keys, and the server's own /metrics.

python benchmarks/scale.py [--short] [--steady 300] [--scale-down-after S] [--sticky 10000] [--json]

The deployment runs at mllib's defaults (nothing in [serve], [deploy] or [rollout]; --short, and
--scale-down-after, set `scale_down_after_s` alone so the quiet period fits the run). The model
(benchmarks/paced_model.py) sleeps for what a file says on every request, so a version's latency
is raised while it serves; one replica answers one request at a time (inline, the default), so
in-flight requests queue on it as they would on a CPU-bound model, without the sleep using CPU.

Phases, one deployment, in order (every answer's status is counted at the client):
  step       closed-loop clients from 1 in flight to 4x the target (16): time from the step
             to the controller's scale-up decision (its `deploy history` timestamp), and until
             the server's p99 over a sliding 1 s window (from /metrics, scraped every 0.2 s) is
             under 100 ms for good
  steady     6 in flight for --steady seconds (--short: 60): scaling events and direction reversals
  scale-down the load drops to 1 in flight: the quiet period, the scale-down, failed requests
  promote    a canary of v2 at 25%, promoted in two steps (50, 100) 2 s apart: failed requests
  rollback   a canary of v3 at 25%, rolled back by hand under load: failed requests
  breach     a canary of v3 at 25% whose latency is raised after its warm-up window: time from the
             breach to the controller's rollback decision and to the last canary answer a client
             saw, the canary requests it had answered by then, failed requests
  sticky     an A/B test (50%, sticky by API key): --sticky requests (--short: 2,000) spread over
             100 keys (--short: 50): the share of keys that always saw one version
The peers' anchors (no run of theirs here): Ray Serve's default upscale_delay_s is 30 s,
SkyServe's upscale_delay_seconds 300 s.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]

DELAY_S = 0.006  # the model's own latency: 1 replica at 16 in flight is over 100 ms, 2 are not
BREACH_DELAY_S = 0.03  # the canary after its breach: >50% and >10 ms slower than stable
TARGET = 4  # [serve] target_inflight's default
CANARY = 25.0
CONFIG = """name = "paced"
model = "model.py:Paced"
"""


@dataclass(frozen=True)
class Answer:
    at: float  # wall clock when it came back
    status: int  # 0: no HTTP answer (a connection error or timeout)
    tag: int | None  # the version that answered
    key: int  # index of the API key it was sent with


class Load:
    """Closed-loop clients, one thread and keep-alive connection each, posting until stopped;
    `clients(n)` changes how many post at a time while it runs. Each request goes with the next
    of `keys` in turn."""

    def __init__(self, url: str, keys: list[str], most: int = 16) -> None:
        self.url, self.keys = url, keys
        self.active = 0
        self.answers: list[Answer] = []
        self.done = threading.Event()
        self._turn = itertools.count()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(most)]
        for thread in self.threads:
            thread.start()

    def clients(self, count: int) -> None:
        self.active = count

    def use_keys(self, keys: list[str]) -> None:
        self.keys = keys

    def _run(self, index: int) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.done.is_set():
                if index >= self.active:
                    time.sleep(0.01)
                    continue
                keys = self.keys
                key = next(self._turn) % len(keys)
                headers = {"authorization": f"Bearer {keys[key]}"}
                try:
                    reply = client.post(self.url, json={"x": 1}, headers=headers)
                    tag = reply.json().get("tag") if reply.status_code == 200 else None
                    self.answers.append(Answer(time.time(), reply.status_code, tag, key))
                except (httpx.HTTPError, ValueError):
                    self.answers.append(Answer(time.time(), 0, None, key))

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in list(self.answers) if start <= a.at < end]

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join()


class Watch:
    """The deployment's /metrics, scraped every `every_s` in a thread of its own: the server's
    own p99 over any sliding window, and its stable replicas ready to answer (`mllib_replicas`)."""

    def __init__(self, url: str, every_s: float = 0.2) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        from mllib.serving.control.scrape import parse

        self.points: list[tuple[float, Any]] = []
        self.ready: list[tuple[float, float]] = []  # (time, stable replicas ready)
        self.done = threading.Event()

        def run() -> None:
            while not self.done.wait(every_s):
                try:
                    text = httpx.get(f"{url}/metrics", timeout=2.0).raise_for_status().text
                except httpx.HTTPError:
                    continue
                now = time.time()
                self.points.append((now, parse(text)))
                for family in text_string_to_metric_families(text):
                    for sample in family.samples:
                        if sample.name == "mllib_replicas" and sample.labels["variant"] == "stable":
                            self.ready.append((now, sample.value))

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def p99s(self, start: float, end: float, window_s: float = 1.0) -> list[tuple[float, float]]:
        """(time, p99 in ms) of every window of `window_s` that ends between start and end."""
        from mllib.serving.control.scrape import quantile

        points = list(self.points)
        found = []
        for i, (when, totals) in enumerate(points):
            if not start <= when <= end:
                continue
            earlier = [p for p in points[:i] if p[0] <= when - window_s]
            if not earlier:
                continue
            p99 = quantile(0.99, totals.minus(earlier[-1][1]).buckets)
            if p99 is not None:
                found.append((when, p99 * 1000))
        return found

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def failed(answers: list[Answer]) -> int:
    return sum(1 for a in answers if not 200 <= a.status < 300)


def wait(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"scale benchmark: timed out after {timeout:g}s waiting for {what}")


class Bench:
    """The project, its prod deployment and the load on it."""

    def __init__(self, project: Path, sticky_keys: int) -> None:
        from mllib.serving.control import keys, records
        from mllib.serving.control.deploy import DeployContext
        from mllib.workspace import Workspace

        self.project = project
        self.ctx = DeployContext.create(Workspace.find(project), user="bench")
        self.records = records

        def new_key() -> str:
            made = keys.create_key(
                self.ctx.ws.registry, self.ctx.clock, self.ctx.settings.keys,
                env="prod", user="bench", rps=1e9, burst=1e9,
            )  # fmt: skip
            return made.token

        self.deploy("paced:1")
        self.url = self.records.live(self.ctx.ws.registry, "prod").url
        self.key = new_key()
        self.sticky_keys = [new_key() for _ in range(sticky_keys)]
        wait(self._answers, 30, "the deployment to answer with its key")
        self.load = Load(f"{self.url}/predict", [self.key])
        self.watch = Watch(self.url)

    def _answers(self) -> bool:
        reply = httpx.post(
            f"{self.url}/predict", json={"x": 1}, headers={"authorization": f"Bearer {self.key}"}
        )
        return reply.status_code == 200

    def deploy(self, ref: str, **strategy: Any) -> None:
        from mllib.serving.control.deploy import deploy
        from mllib.serving.control.rollout import Strategy

        deploy(
            self.ctx, ref, "prod", force=True, reason="benchmark",
            strategy=Strategy.of(**strategy) if strategy else None,
        )  # fmt: skip

    def delay(self, name: str, seconds: float) -> None:
        (self.project / name).write_text(str(seconds))

    def events(self, action: str, since: float, result: str | None = None) -> list[dict]:
        """`deploy history` rows of `action` since `since`, oldest first."""
        from mllib.serving import audit

        rows = audit.history(self.ctx.ws.registry, env="prod", action=action, limit=1000)
        found = [r for r in rows if r["ts"] >= since and (result is None or r["result"] == result)]
        return sorted(found, key=lambda r: r["ts"])

    def variants(self) -> set[str]:
        from mllib.serving.control.status import status

        (row,) = status(self.ctx, "prod", window_s=0.2)
        return {v["name"] for v in row["variants"]}

    def live_version(self) -> int | None:
        live = self.records.live(self.ctx.ws.registry, "prod")
        return live.version if live else None

    def seen(self, tag: int, since: float) -> bool:
        return any(a.tag == tag for a in self.load.between(since, time.time() + 1))

    def close(self) -> None:
        from mllib.serving.control.deploy import stop

        self.load.stop()
        self.watch.stop()
        stop(self.ctx, "prod")


def step(bench: Bench, seconds: float) -> dict:
    bench.load.clients(1)
    time.sleep(5)  # one request at a time: nothing queues, so nothing scales before the step
    before = [count for _, count in bench.watch.ready[-5:]]
    start = time.time()
    bench.load.clients(4 * TARGET)
    time.sleep(seconds)
    end = time.time()
    ups = [e for e in bench.events("scale", start, "up") if e["detail"]["variant"] == "stable"]
    wanted = ups[-1]["detail"]["to"] if ups else int(max(before, default=1))
    ready = [when for when, count in bench.watch.ready if when >= start and count >= wanted]
    windows = bench.watch.p99s(start, end)
    over = [when for when, p99 in windows if p99 >= 100]
    return {
        "in_flight": f"1 → {4 * TARGET}",
        "replicas_before": int(max(before, default=1)),  # more than 1: it scaled before
        "decision_s": round(ups[0]["ts"] - start, 3) if ups else None,
        "replicas": wanted,
        "replicas_ready_s": round(ready[0] - start, 2) if ups and ready else None,
        "reason": ups[0]["reason"] if ups else None,
        "peak_p99_ms": round(max((p for _, p in windows), default=0.0), 1),
        "p99_under_100ms_s": round((max(over) - start) if over else 0.0, 2),
        "p99_last_5s_ms": round(
            statistics.median([p for t, p in windows if t >= end - 5] or [0.0]), 1
        ),
        "requests": len(bench.load.between(start, end)),
        "failed": failed(bench.load.between(start, end)),
    }


def steady(bench: Bench, seconds: float) -> dict:
    bench.load.clients(6)
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    events = [e for e in bench.events("scale", start) if e["detail"]["variant"] == "stable"]
    directions = [e["result"] for e in events]
    reversals = sum(1 for a, b in itertools.pairwise(directions) if a != b)
    return {
        "in_flight": 6,
        "seconds": round(end - start),
        "scaling_events": len(events),
        "reversals": reversals,
        "failed": failed(bench.load.between(start, end)),
    }


def scale_down(bench: Bench, quiet_s: float, replicas: int) -> dict:
    bench.load.clients(1)
    start = time.time()
    if replicas <= 1:  # one core: nothing to scale down from
        return {"after_s": None, "to": 1, "requests": 0, "failed": 0}
    wait(
        lambda: bench.events("scale", start, "down"), quiet_s * 8 + 60, "the scale-down"
    )  # the quiet period, doubled at most 3 times after a regret
    time.sleep(3)
    downs = bench.events("scale", start, "down")
    answers = bench.load.between(start, time.time())
    return {
        "after_s": round(downs[0]["ts"] - start, 1),
        "to": downs[-1]["detail"]["to"],
        "requests": len(answers),
        "failed": failed(answers),
    }


def promote_phase(bench: Bench) -> dict:
    from mllib.serving.control.promote import promote

    bench.load.clients(8)
    start = time.time()
    bench.deploy("paced:2", canary=CANARY)
    wait(lambda: bench.seen(2, start), 30, "the canary's first answer")
    promote(bench.ctx, "prod", steps="50,100", interval_s=2.0)
    wait(lambda: bench.live_version() == 2 and bench.variants() == {"stable"}, 60, "v2 stable")
    time.sleep(2)
    answers = bench.load.between(start, time.time())
    late = answers[-50:]
    return {
        "requests": len(answers),
        "failed": failed(answers),
        "last_50_on_v2": all(a.tag == 2 for a in late),
    }


def rollback_phase(bench: Bench) -> dict:
    from mllib.serving.control.deploy import rollback

    bench.load.clients(8)
    start = time.time()
    bench.deploy("paced:3", canary=CANARY)
    wait(lambda: bench.seen(3, start), 30, "the canary's first answer")
    time.sleep(1)
    rollback(bench.ctx, "prod", reason="benchmark")
    wait(lambda: bench.variants() == {"stable"}, 30, "stable alone")
    back = time.time()
    time.sleep(2)
    answers = bench.load.between(start, time.time())
    return {
        "requests": len(answers),
        "failed": failed(answers),
        "canary_after_rollback": sum(
            1 for a in bench.load.between(back + 0.5, time.time()) if a.tag == 3
        ),
    }


def breach(bench: Bench) -> dict:
    bench.load.clients(8)
    bench.delay("canary.txt", DELAY_S)
    start = time.time()
    bench.deploy("paced:3", canary=CANARY)
    wait(lambda: bench.seen(3, start), 30, "the canary's first answer")
    time.sleep(bench.ctx.settings.rollout.window_s + 1)  # past its warm-up (never judged)
    breached = time.time()
    bench.delay("canary.txt", BREACH_DELAY_S)
    rolled = wait(lambda: bench.events("rollback", breached, "auto"), 60, "the automatic rollback")
    wait(lambda: bench.variants() == {"stable"}, 30, "stable alone")
    time.sleep(3)
    end = time.time()
    bench.delay("canary.txt", DELAY_S)
    canary = [a.at for a in bench.load.between(breached, end) if a.tag == 3]
    needed = bench.ctx.settings.rollout.min_requests
    measurable = canary[needed - 1] if len(canary) >= needed else None
    decision = rolled[0]["ts"]
    return {
        "canary_percent": CANARY,
        "canary_ms": f"{DELAY_S * 1000:g} → {BREACH_DELAY_S * 1000:g}",
        "decision_s": round(decision - breached, 2),
        "back_on_stable_s": round((canary[-1] if canary else breached) - breached, 2),
        "measurable_s": None if measurable is None else round(measurable - breached, 2),
        "after_measurable_s": None
        if measurable is None
        else round(max(canary[-1], decision) - measurable, 2),
        "canary_requests": len(canary),
        "reason": rolled[0]["reason"],
        "requests": len(bench.load.between(start, end)),
        "failed": failed(bench.load.between(start, end)),
    }


def sticky(bench: Bench, requests: int) -> dict:
    from mllib.serving.control.deploy import rollback

    began = time.time()
    bench.deploy("paced:3", ab=50.0, sticky_by="key")
    time.sleep(bench.ctx.settings.keys.refresh_s + 0.5)  # the servers know the new keys
    bench.load.clients(0)
    time.sleep(0.5)
    bench.load.use_keys(bench.sticky_keys)
    start = time.time()
    bench.load.clients(8)
    wait(lambda: len(bench.load.between(start, time.time() + 1)) >= requests, 600, "the requests")
    bench.load.clients(0)
    time.sleep(0.5)
    answers = bench.load.between(start, time.time())[:requests]
    bench.load.use_keys([bench.key])
    judged_worse = bench.events("rollback", began, "auto")  # a sound A/B test is never undone
    rollback(bench.ctx, "prod", reason="benchmark")
    sides: dict[int, set] = {}
    for a in answers:
        sides.setdefault(a.key, set()).add(a.tag)
    one = sum(1 for seen in sides.values() if len(seen) == 1)
    tags = [a.tag for a in answers]
    return {
        "requests": len(answers),
        "keys": len(sides),
        "sticky_percent": round(100 * one / max(1, len(sides)), 2),
        "on_candidate_percent": round(100 * tags.count(3) / max(1, len(tags)), 1),
        "rolled_back_by_the_judge": [e["reason"] for e in judged_worse],
        "failed": failed(answers),
    }


def prepare(tmp: Path, scale_down_after: float | None) -> Path:
    project = tmp / "proj"
    project.mkdir()
    shutil.copy(ROOT / "benchmarks" / "paced_model.py", project / "model.py")
    config = CONFIG
    if scale_down_after is not None:
        config += f"\n[serve]\nscale_down_after_s = {scale_down_after:g}\n"
    (project / "mllib.toml").write_text(config)
    (project / "delay.txt").write_text(str(DELAY_S))
    (project / "canary.txt").write_text(str(DELAY_S))
    for tag, delay in ((1, "delay.txt"), (2, "delay.txt"), (3, "canary.txt")):
        subprocess.run(
            [sys.executable, "-m", "mllib", "train", "model.py", f"--tag={tag}",
             f"--delay_file={delay}"],
            cwd=project, check=True, capture_output=True,
        )  # fmt: skip
    return project


def table(result: dict) -> str:
    s, d, b = result["step"], result["steady"], result["breach"]
    rows = [
        ("step load 1 → 16 in flight: scale-up decision", f"{s['decision_s']} s "
         f"({s['replicas_before']} → {s['replicas']} replicas, ready at {s['replicas_ready_s']} s)", "≤ 1 s; Ray Serve 30 s, SkyServe 300 s (defaults)"),
        ("  server p99 (1 s window) under 100 ms for good", f"{s['p99_under_100ms_s']} s "
         f"after the step (peak {s['peak_p99_ms']} ms, last 5 s {s['p99_last_5s_ms']} ms)", "≤ 10 s"),
        (f"steady load, {d['seconds']} s: scale reversals", f"{d['reversals']} "
         f"({d['scaling_events']} scaling events)", "≤ 1 per 5 min"),
        ("failed requests: scale-down / promote / rollback",
         f"{result['scale_down']['failed']} / {result['promote']['failed']} / "
         f"{result['rollback']['failed']}", "0"),
        (f"canary breach ({b['canary_percent']:g}%, {b['canary_ms']} ms): decision / back on "
         "stable", f"{b['decision_s']} s / {b['back_on_stable_s']} s after the breach", "≤ 10 s"),
        ("  canary requests by then; failed", f"{b['canary_requests']}; {b['failed']}", "≥ 200; 0"),
        (f"sticky A/B: keys on one side ({result['sticky']['requests']} requests, "
         f"{result['sticky']['keys']} keys)", f"{result['sticky']['sticky_percent']}%", "100%"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    value = max(len(r[1]) for r in rows)
    lines = [f"{'':{width}}  {'mllib (defaults)':{value}}  goal / peers"]
    lines += [f"{a:{width}}  {b:{value}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="the suite's run: 60 s steady")
    parser.add_argument("--steady", type=float, help="seconds of steady load (default 300)")
    parser.add_argument("--scale-down-after", type=float, help="[serve] scale_down_after_s")
    parser.add_argument("--sticky", type=int, help="A/B requests (default 10,000)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    steady_s = args.steady or (60.0 if args.short else 300.0)
    quiet_s = args.scale_down_after or (15.0 if args.short else None)
    requests = args.sticky or (2000 if args.short else 10000)
    tmp = Path(tempfile.mkdtemp(prefix="mllib-bench-scale-"))
    bench = None
    try:
        bench = Bench(prepare(tmp, quiet_s), 50 if args.short else 100)
        result: dict[str, Any] = {
            "load_average": [round(x, 1) for x in os.getloadavg()],
            "scale_down_after_s": quiet_s or 300.0,
        }
        result["step"] = step(bench, 12.0 if args.short else 20.0)
        result["steady"] = steady(bench, steady_s)
        result["scale_down"] = scale_down(bench, quiet_s or 300.0, result["step"]["replicas"])
        result["promote"] = promote_phase(bench)
        result["rollback"] = rollback_phase(bench)
        result["breach"] = breach(bench)
        result["sticky"] = sticky(bench, requests)
        result["load_average_end"] = [round(x, 1) for x in os.getloadavg()]
    finally:
        if bench is not None:
            bench.close()
        shutil.rmtree(tmp, ignore_errors=True)
    summary = (
        f"{table(result)}\nload average {result['load_average']} → {result['load_average_end']}"
    )
    print(summary, file=sys.stderr if args.json else sys.stdout)  # --json: the table on stderr
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

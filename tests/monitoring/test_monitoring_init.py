"""`mllib monitoring init` end to end: a real deployment, the generated files checked by promtool,
a real Prometheus (Debian's) scraping the deployment through the generated config and its
file-based service discovery as the deployment is replaced and stopped, every dashboard panel's
PromQL run by that Prometheus, the dashboard read by Grafana's own dashboard models (Grafana
Labs' foundation SDK), and the Promtail config matched against the deployment's real log.
"""

from __future__ import annotations

import glob
import json
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from mllib.monitoring import grafana
from tests.conftest import Project, wait_for

MODEL = """
import mllib

class Doubler:
    def __init__(self):
        self.bias = mllib.Param(0.0)

    def train(self):
        pass

    def predict(self, request):
        if request.get("fail"):
            raise ValueError("asked to fail")
        return {"y": request["x"] * 2 + self.bias}
"""

CONFIG = """
name = "doubler"

[serve]
workers = 1

[deploy]
ready_timeout_s = 90
"""


@pytest.fixture
def doubler(project: Project):
    project.write("model.py", MODEL)
    project.write("mllib.toml", CONFIG)
    for params in ((), ("--bias=1",)):
        result = project.mllib("train", "model.py", "--runtime", "process", *params)
        assert result.returncode == 0, result.output
    yield project
    project.mllib("deploy", "stop", "--env", "staging")


def _targets(project: Project) -> list[dict]:
    return json.loads((project.root / ".mllib/serving/targets/deployments.json").read_text())


def _deploy(project: Project, ref: str) -> dict:
    result = project.mllib("deploy", ref, "--env", "staging")
    assert result.returncode == 0, result.output
    status = project.mllib("deploy", "status", "--env", "staging", "--json").json()
    return status[0] if isinstance(status, list) else status


def _grafana_substitutions(expr: str) -> str:
    """A panel's PromQL as Grafana sends it with every env and model selected."""
    return (
        expr.replace("$__rate_interval", "15s")
        .replace('=~"$env"', '=~".*"')
        .replace('=~"$model"', '=~".*"')
    )


def test_prometheus_scrapes_deployments_through_the_generated_config(
    doubler, promtool, start_prometheus
):
    staging = _deploy(doubler, "doubler:1")
    result = doubler.mllib("monitoring", "init", "monitoring", "--scrape-interval", "1s")
    assert result.returncode == 0, result.output
    folder = doubler.root / "monitoring"
    address = staging["url"].removeprefix("http://")
    assert _targets(doubler) == [
        {
            "targets": [address],
            "labels": {
                "env": "staging",
                "model": "doubler",
                "deployment": staging["deployment_id"],
                "version": "1",
            },
        }
    ]

    for args in (["check", "config"], ["check", "rules"]):
        name = "prometheus.yml" if args[1] == "config" else "alerts.yml"
        check = subprocess.run(
            [promtool, *args, str(folder / name)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
    rules = subprocess.run(
        [promtool, "check", "rules", str(folder / "alerts.yml")], capture_output=True, text=True
    )
    assert "SUCCESS: 8 rules found" in rules.stdout

    prometheus = start_prometheus(folder / "prometheus.yml")
    target = wait_for(
        lambda: [t for t in prometheus.active_targets() if t["health"] == "up"],
        timeout=30,
        what="Prometheus to scrape the staging deployment",
    )[0]
    assert target["labels"]["job"] == "mllib-deployments"
    assert target["labels"]["deployment"] == staging["deployment_id"]
    assert target["scrapeUrl"] == f"{staging['url']}/metrics"

    # Drive requests at a known pace while Prometheus computes their rate.
    sent = []
    stop = threading.Event()

    def drive() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                client.post(f"{staging['url']}/predict", json={"x": 1})
                sent.append(time.monotonic())
                time.sleep(0.02)

    driver = threading.Thread(target=drive)
    driver.start()
    try:
        rate_query = 'sum by (env, model, version) (rate(mllib_requests_total{env="staging"}[5s]))'
        rate = wait_for(
            lambda: [
                float(r["value"][1])
                for r in prometheus.query(rate_query)["result"]
                if float(r["value"][1]) > 0
            ],
            timeout=30,
            what="a request rate from Prometheus",
        )
        window = [t for t in sent if t > time.monotonic() - 5]
    finally:
        stop.set()
        driver.join()
    client_rate = len(window) / 5
    assert 0.3 * client_rate < rate[0] < 3 * client_rate, (rate, client_rate)
    series = prometheus.query(rate_query)["result"][0]["metric"]
    assert series == {"env": "staging", "model": "doubler", "version": "1"}

    # Every dashboard panel's PromQL parses and runs; the request panels see the deployment.
    board = json.loads((folder / "grafana" / "mllib.json").read_text())
    results = {}
    for expr in grafana.queries(board):
        results[expr] = prometheus.query(_grafana_substitutions(expr))["result"]
    requests_panel = board["panels"][0]["targets"][0]["expr"]
    assert results[requests_panel], "the Requests/s panel shows no series"
    replicas = next(p for p in board["panels"] if p["title"] == "Replicas up")
    [up] = results[replicas["targets"][0]["expr"]]
    assert up["value"][1] == "1"

    # Promtail reads the deployment's real log, and every label it extracts is in its lines.
    promtail = yaml.safe_load((folder / "promtail.yml").read_text())
    [job] = promtail["scrape_configs"]
    paths = glob.glob(job["static_configs"][0]["labels"]["__path__"])
    assert paths and all(p.endswith("/server.log") for p in paths)
    lines = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines()]
    requests = [line for line in lines if line.get("event") == "request"]
    assert requests
    extracted = job["pipeline_stages"][0]["json"]["expressions"]
    for label in job["pipeline_stages"][1]["labels"]:
        assert label in extracted
        if label != "level":
            assert all(label in line for line in requests), label
    assert all(line["time"].endswith("Z") for line in lines)  # RFC3339, as the stage parses it

    # A new version takes over (same port): the targets file and Prometheus follow it.
    replaced = _deploy(doubler, "doubler:2")
    assert [g["labels"]["version"] for g in _targets(doubler)] == ["2"]
    wait_for(
        lambda: [
            t
            for t in prometheus.active_targets()
            if t["labels"].get("deployment") == replaced["deployment_id"]
            and t["labels"]["version"] == "2"
        ],
        timeout=30,
        what="Prometheus to discover the new version",
    )

    # Stopped: the target goes away without touching Prometheus.
    result = doubler.mllib("deploy", "stop", "--env", "staging")
    assert result.returncode == 0, result.output
    assert _targets(doubler) == []
    wait_for(lambda: prometheus.active_targets() == [], timeout=30, what="the target to go")


def test_the_dashboard_is_grafanas_dashboard_model_with_nothing_lost():
    """Grafana's dashboard models (grafana-foundation-sdk) read the dashboard and write it back:
    a key Grafana does not know would be lost, a value its enums refuse would raise."""
    board = grafana.dashboard()
    assert _lost_in_grafanas_model(board) == []
    panels = board["panels"]
    assert {p["title"] for p in panels} >= {
        "Requests/s",
        "Error rate",
        "Latency p50 / p90 / p99",
        "Replicas up",
        "Training runs by status",
        "Queue depth",
    }
    assert len({p["id"] for p in panels}) == len(panels)
    per_variant = [p for p in panels if p["title"] in ("Requests/s", "Error rate")]
    assert all("by (env, model, version, variant)" in p["targets"][0]["expr"] for p in per_variant)

    broken = grafana.dashboard()
    broken["panels"][0]["gridPosition"] = broken["panels"][0].pop("gridPos")
    assert _lost_in_grafanas_model(broken) == ["panels[0].gridPosition"]


def _lost_in_grafanas_model(board: dict) -> list[str]:
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    plugins.register_default_plugins()
    back = json.loads(JSONEncoder().encode(Dashboard.from_json(board)))
    lost: list[str] = []

    def walk(ours, theirs, path: str) -> None:
        if isinstance(ours, dict):
            for key, value in ours.items():
                where = f"{path}.{key}" if path else key
                if not isinstance(theirs, dict) or key not in theirs:
                    lost.append(where)
                else:
                    walk(value, theirs[key], where)
        elif isinstance(ours, list):
            if not isinstance(theirs, list) or len(theirs) != len(ours):
                lost.append(path)
            else:
                for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
                    walk(a, b, f"{path}[{i}]")
        elif ours != theirs:
            lost.append(path)

    walk(board, back, "")
    return lost


def test_init_refuses_to_overwrite_and_checks_its_options(doubler):
    assert doubler.mllib("monitoring", "init", "mon").returncode == 0
    again = doubler.mllib("monitoring", "init", "mon")
    assert again.returncode == 2
    assert "already exist" in again.output and "--force" in again.output
    assert doubler.mllib("monitoring", "init", "mon", "--force").returncode == 0
    bad = doubler.mllib("monitoring", "init", "other", "--scrape-interval", "often")
    assert bad.returncode == 2 and "not a Prometheus duration" in bad.output
    assert not (doubler.root / "other").exists()
    server = doubler.mllib("monitoring", "init", "srv", "--server", "mllib.internal:8080")
    assert server.returncode == 0, server.output
    config = yaml.safe_load((doubler.root / "srv" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["mllib-server"]["static_configs"] == [{"targets": ["mllib.internal:8080"]}]

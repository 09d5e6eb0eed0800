"""The team server's /metrics (a real server on loopback, on SQLite and on PostgreSQL): runs
submitted with the real `mllib` and one cancelled show in the counts by status, the queue's depth
per priority and the submissions counter, with no user name or run id in the text; the live text
passes `promtool check metrics`; `mllib monitoring init` in a project logged in to the server
adds its scrape job, and a real Prometheus scrapes it through that config. Finished runs'
durations and queue waits, from runs real agents ran, are in tests/agents/test_team_server.py."""

from __future__ import annotations

import subprocess

import httpx
import yaml

from tests.conftest import Project, wait_for
from tests.server.conftest import team_server  # noqa: F401 - the fixture: a server per database
from tests.server.test_api import login, submit_detached
from tests.serving.test_serve import samples


def test_the_servers_metrics_count_its_runs_and_queue_and_prometheus_scrapes_them(
    model_project: Project,
    team_server,  # noqa: F811
    promtool,
    start_prometheus,
):
    login(model_project, team_server, "bo")
    first = submit_detached(model_project, "--epochs=2")
    urgent = submit_detached(model_project, "--epochs=2", "--priority", "3")
    dropped = submit_detached(model_project, "--epochs=2")
    assert model_project.mllib("runs", "cancel", dropped).returncode == 0

    answer = httpx.get(f"{team_server.url}/metrics", timeout=10)  # no token: aggregates only
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = answer.text
    got = samples(text)
    values = {value for _, labels in got for _, value in labels}
    assert not values & {"bo", first, urgent, dropped}
    assert not any(run_id in text for run_id in (first, urgent, dropped))
    assert got[("mllib_runs", (("status", "queued"),))] == 2
    assert got[("mllib_runs", (("status", "cancelled"),))] == 1
    assert got[("mllib_runs", (("status", "succeeded"),))] == 0  # present at 0 from the start
    assert got[("mllib_queue_depth", (("priority", "0"),))] == 1
    assert got[("mllib_queue_depth", (("priority", "3"),))] == 1
    assert got[("mllib_queue_users", ())] == 1
    assert got[("mllib_submissions_total", ())] == 3
    # nothing was claimed or ran: the histograms are there, empty
    assert got[("mllib_queue_wait_seconds_count", ())] == 0
    assert got[("mllib_run_duration_seconds_count", (("status", "cancelled"),))] == 0
    assert got[("mllib_agents", (("state", "reachable"),))] == 0
    assert got[("mllib_agent_slots", (("state", "busy"),))] == 0

    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr

    # The project is logged in to the server: monitoring init scrapes it without --server.
    written = model_project.mllib("monitoring", "init", "mon", "--scrape-interval", "1s")
    assert written.returncode == 0, written.output
    config_file = model_project.root / "mon" / "prometheus.yml"
    config = yaml.safe_load(config_file.read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "mllib-server")
    assert job["static_configs"] == [{"targets": [f"127.0.0.1:{team_server.port}"]}]
    check = subprocess.run(
        [promtool, "check", "config", str(config_file)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr

    prometheus = start_prometheus(config_file)
    by_status = wait_for(
        lambda: {
            r["metric"]["status"]: float(r["value"][1])
            for r in prometheus.query("sum by (status) (mllib_runs)")["result"]
        },
        timeout=30,
        what="Prometheus to scrape the team server",
    )
    assert by_status["queued"] == 2 and by_status["cancelled"] == 1
    depth = prometheus.query("sum by (priority) (mllib_queue_depth)")["result"]
    assert {r["metric"]["priority"]: float(r["value"][1]) for r in depth} == {"0": 1, "3": 1}

"""Scheduled evaluation end to end: `mllib evaluate --model NAME@prod --data eval=NAME --every 1d`
with real runs, a real prod deployment and Label Studio data (an export written in Label Studio's
documented JSON export format, imported with `mllib data import label-studio`). The timer is
stood in by calling `mllib schedules run-due` as it would (its cron line is run through sh); the
Sentry alert goes through the real sentry-sdk transport to a local HTTP endpoint standing in for
Sentry's ingest (Sentry's cloud cannot be reached from tests).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Project, wait_for
from tests.monitoring.sentry_ingest import SentryIngest, exception_of

MODEL = """
import json
import os

import mllib


class Sentiment:
    def __init__(self):
        self.negative_word = mllib.Param("broke")

    def train(self):
        pass

    def predict(self, request):
        return "Negative" if self.negative_word in request["text"].lower() else "Positive"

    def evaluate(self):
        # The dataset of this evaluation (--data eval=reviews), not one recorded in training.
        with open(os.path.join(os.environ["EVAL_DATA"], "examples.jsonl")) as lines:
            examples = [json.loads(line) for line in lines]
        right = sum(self.predict(e["data"]) == e["annotations"]["sentiment"] for e in examples)
        return {"accuracy": right / len(examples), "examples": len(examples)}
"""

CONFIG = """
name = "sentiment"
model = "model.py:Sentiment"

[runtime]
local = "process"

[serve]
workers = 1

[deploy]
ready_timeout_s = 90
"""


def export(*labelled: tuple[str, str]) -> str:
    """A Label Studio JSON export of text tasks, each with one `sentiment` choice."""
    tasks = [
        {
            "id": number,
            "data": {"text": text},
            "annotations": [
                {
                    "id": 100 + number,
                    "was_cancelled": False,
                    "created_at": "2026-11-02T10:00:00.000000Z",
                    "result": [
                        {
                            "from_name": "sentiment",
                            "to_name": "text",
                            "type": "choices",
                            "value": {"choices": [label]},
                        }
                    ],
                }
            ],
        }
        for number, (text, label) in enumerate(labelled, start=1)
    ]
    return json.dumps(tasks)


GATE = "mllib_scheduled_evaluation_gate_passed"
GOOD = [("Broke after a week", "Negative"), ("Great battery", "Positive")]
# Newer annotations that the deployed version gets wrong: accuracy 2/4.
DRIFTED = [*GOOD, ("Stopped working", "Negative"), ("Died in a day", "Negative")]


@pytest.fixture
def sentiment(project: Project):
    project.write("model.py", MODEL)
    project.write("mllib.toml", CONFIG)
    for params in ((), ("--negative_word=great",)):
        result = project.mllib("train", "model.py", *params)
        assert result.returncode == 0, result.output
    project.write("export.json", export(*GOOD))
    imported = project.mllib("data", "import", "label-studio", "export.json", "--name", "reviews")
    assert imported.returncode == 0, imported.output
    yield project
    project.mllib("deploy", "stop", "--env", "prod")


def _deploy_prod(project: Project, ref: str) -> dict:
    result = project.mllib("deploy", ref, "--env", "prod", "--force", "--reason", "test")
    assert result.returncode == 0, result.output
    status = project.mllib("deploy", "status", "--env", "prod", "--json").json()
    return status[0] if isinstance(status, list) else status


def test_a_schedule_evaluates_the_prod_version_on_the_newest_data_and_alerts(
    sentiment, promtool: str, node_exporter_bin: str, start_prometheus
):
    project = sentiment
    prod = _deploy_prod(project, "sentiment:1")
    with SentryIngest() as ingest:
        project.write("mllib.toml", CONFIG + f'\n[sentry]\ndsn = "{ingest.dsn}"\n')
        added = project.mllib(
            "evaluate", "--model", "sentiment@prod", "--data", "eval=reviews",
            "--fail-under", "accuracy=0.9", "--every", "1d",
        )  # fmt: skip
        assert added.returncode == 0, added.output
        schedule_id = added.stdout.strip()
        assert "Now that is sentiment v1, deployed in prod." in added.stderr
        assert project.mllib("runs", "list", "--json").json()[0]["action"] == "train"  # not now

        [listed] = project.mllib("schedules", "list", "--json").json()
        assert listed["id"] == schedule_id and listed["every_s"] == 86400
        assert listed["last"] is None

        # The timer's first tick runs it: the version in prod, on reviews' newest version.
        due = project.mllib("schedules", "run-due")
        assert due.returncode == 0, due.output
        assert f"{schedule_id} succeeded: sentiment v1 in prod" in due.stderr
        evaluation = project.last_run()
        assert evaluation["action"] == "evaluate"
        assert evaluation["source_run_id"] == prod["run_id"]
        assert evaluation["eval_metrics"] == {"accuracy": 1.0, "examples": 2.0}
        assert evaluation["datasets"][0]["version"] == 1
        # Not due again for a day.
        again = project.mllib("schedules", "run-due")
        assert again.returncode == 0 and "No schedule is due." in again.stderr

        # New annotations arrive; the deployed version does worse on them.
        project.write("export.json", export(*DRIFTED))
        assert (
            project.mllib(
                "data", "import", "label-studio", "export.json", "--name", "reviews"
            ).stdout.strip()
            == "reviews@2"
        )
        breached = project.mllib("schedules", "run-now", schedule_id)
        assert breached.returncode == 1, breached.output
        assert f"{schedule_id} breached: sentiment v1 in prod" in breached.stderr
        assert "accuracy 0.5 is under 0.9" in breached.stderr
        assert project.last_run()["datasets"][0]["version"] == 2

        # ...a Sentry event...
        [event] = ingest.wait_events(1)
        assert exception_of(event)["type"] == "EvaluationBelowThreshold"
        assert "accuracy 0.5 is under 0.9" in exception_of(event)["value"]
        tags = event["tags"]
        assert tags["failure_class"] == "evaluation_below_threshold"
        assert tags["schedule"] == schedule_id
        assert (tags["model"], tags["version"], tags["env"]) == ("sentiment", "1", "prod")
        assert tags["deployment"] == prod["deployment_id"]
        assert tags["run_id"] == project.last_run()["id"]
        assert ingest.dsn not in ingest.raw()

    # ...each run recorded with the deployment it evaluated...
    shown = project.mllib("schedules", "show", schedule_id, "--json").json()
    assert [r["status"] for r in shown["runs"]] == ["breached", "succeeded"]
    assert {r["deployment_id"] for r in shown["runs"]} == {prod["deployment_id"]}
    assert shown["runs"][0]["eval_metrics"]["accuracy"] == 0.5

    # ...the trend in `mllib models show`...
    version = project.mllib("models", "show", "sentiment:1", "--json").json()
    assert [h["eval_metrics"]["accuracy"] for h in version["history"]] == [1.0, 0.5]
    text = project.mllib("models", "show", "sentiment:1").stdout
    assert "Trend (2 evaluations" in text
    assert "accuracy  █▁  1 → 0.5" in text

    # ...and the metric Prometheus reads (node_exporter's textfile collector format).
    prom = (project.root / ".mllib/schedules/evaluations.prom").read_text()
    labels = f'schedule="{schedule_id}",model="sentiment",env="prod"'
    assert f"mllib_scheduled_evaluation_gate_passed{{{labels}}} 0.0" in prom
    assert (
        f'mllib_scheduled_evaluation_metric{{{labels},version="1",metric="accuracy"}} 0.5' in prom
    )
    check = subprocess.run(
        [promtool, "check", "metrics"], input=prom, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # mllib monitoring init's alert rule fires on that series, as Prometheus would evaluate it.
    assert project.mllib("monitoring", "init", "mon").returncode == 0
    [gate] = [line for line in prom.splitlines() if line.startswith(f"{GATE}{{")]
    series, value = gate.rsplit(" ", 1)
    rules_test = {
        "rule_files": ["alerts.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": series, "values": f"1 {value} {value}"}],
                "alert_rule_test": [
                    {"eval_time": "0m", "alertname": "MllibEvaluationUnderThreshold"},
                    {
                        "eval_time": "2m",
                        "alertname": "MllibEvaluationUnderThreshold",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "ticket",
                                    "schedule": schedule_id,
                                    "model": "sentiment",
                                    "env": "prod",
                                },
                                "exp_annotations": {
                                    "summary": f"The scheduled evaluation {schedule_id} of "
                                    "sentiment (prod) is under its --fail-under threshold",
                                    "description": f"See mllib schedules show {schedule_id}, "
                                    "and the trend in mllib models show.",
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (project.root / "mon/alerts_test.yml").write_text(json.dumps(rules_test))
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=project.root / "mon",
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr

    # A real node_exporter serves the file and a real Prometheus scrapes it: the dashboard's
    # panels show the evaluation.
    exporter = _node_exporter(node_exporter_bin, project.root / ".mllib/schedules")
    try:
        config = project.root / "mon/scrape-schedules.yml"
        config.write_text(
            "global: {scrape_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - {{job_name: mllib-schedules, static_configs: [{{targets: ['{exporter[1]}']}}]}}\n"
        )
        prometheus = start_prometheus(config)
        board = json.loads((project.root / "mon/grafana/mllib.json").read_text())
        panels = {p["title"]: p["targets"][0]["expr"] for p in board["panels"]}

        def panel(title: str) -> list[dict]:
            return prometheus.query(panels[title].replace("$model", ".*"))["result"]

        gates = wait_for(lambda: panel("Evaluation gates passed"), timeout=30, what="a scrape")
        assert [(g["metric"]["schedule"], g["value"][1]) for g in gates] == [(schedule_id, "0")]
        values = {r["metric"]["metric"]: r["value"][1] for r in panel("Scheduled evaluations")}
        assert values == {"accuracy": "0.5", "examples": "4"}
    finally:
        exporter[0].terminate()
        exporter[0].wait(timeout=15)


def _node_exporter(binary: str, folder: Path) -> tuple[subprocess.Popen, str]:
    """node_exporter with its textfile collector alone, on a loopback port."""
    from tests.monitoring.conftest import free_port

    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [
            binary,
            f"--web.listen-address={address}",
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={folder}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, address


def test_prod_means_the_version_deployed_when_the_schedule_runs(sentiment):
    project = sentiment
    _deploy_prod(project, "sentiment:1")
    added = project.mllib("evaluate", "--model", "sentiment@prod", "--every", "6h",
                          "--data", "eval=reviews")  # fmt: skip
    schedule_id = added.stdout.strip()
    second = _deploy_prod(project, "sentiment:2")
    result = project.mllib("schedules", "run-now", schedule_id)
    assert result.returncode == 0, result.output
    assert "sentiment v2 in prod" in result.stderr
    run = project.mllib("schedules", "show", schedule_id, "--json").json()["runs"][0]
    assert (run["version"], run["deployment_id"]) == (2, second["deployment_id"])
    assert project.last_run()["eval_metrics"]["accuracy"] == 0.0  # v2 calls "Great" negative

    removed = project.mllib("schedules", "rm", schedule_id)
    assert removed.returncode == 0, removed.output
    assert project.mllib("schedules", "list", "--json").json() == []
    assert project.mllib("runs", "show", run["run_id"], "--json").json()["status"] == "succeeded"


def test_bad_schedules_are_refused_and_nothing_is_stored(sentiment):
    project = sentiment
    cases = [
        (["--model", "sentiment:1", "--every", "5s"], 2, "--every '5s' is not a period"),
        (["--model", "sentiment@prod", "--every", "1d"], 4, "no version of sentiment is deployed"),
        (["--model", "nope", "--every", "1d"], 4, "nope"),
        (["--model", "sentiment:1", "--data", "eval=missing", "--every", "1d"], 4, "missing"),
        (["--model", "sentiment:1", "--detach", "--every", "1d"], 2, "--detach cannot go"),
        (["model.py", "--negative_word=x", "--every", "1d"], 2, "cannot change a trained model"),
    ]
    for args, code, message in cases:
        result = project.mllib("evaluate", *args)
        assert result.returncode == code, (args, result.output)
        assert message in result.stderr, (args, result.output)
    assert project.mllib("schedules", "list", "--json").json() == []
    assert project.mllib("schedules", "run-now", "s0000000").returncode == 4

    # A version named by the model file's model: the newest each time.
    added = project.mllib("evaluate", "model.py", "--data", "eval=reviews", "--every", "1w")
    assert added.returncode == 0, added.output
    [listed] = project.mllib("schedules", "list", "--json").json()
    assert listed["model_ref"] == "sentiment"


def test_install_writes_a_systemd_timer_and_a_cron_line_that_run_due_schedules(
    sentiment, tmp_path: Path
):
    project = sentiment
    project.mllib("evaluate", "--model", "sentiment:1", "--data", "eval=reviews", "--every", "1d")
    units = tmp_path / "units"
    result = project.mllib("schedules", "install", "--dir", str(units))
    assert result.returncode == 0, result.output
    service, timer = sorted(units.iterdir())
    assert service.suffix == ".service" and timer.suffix == ".timer"
    assert "OnCalendar=*-*-* *:*:00" in timer.read_text()
    assert f"WorkingDirectory={project.root}" in service.read_text()
    assert service.read_text().rstrip().endswith("schedules run-due")
    analyze = shutil.which("systemd-analyze")
    if analyze:
        verify = subprocess.run(
            [analyze, "verify", "--man=no", str(timer), str(service)],
            capture_output=True,
            text=True,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
    # Written again with the same content is fine; other content needs --force.
    assert project.mllib("schedules", "install", "--dir", str(units)).returncode == 0
    service.write_text("[Service]\n")
    assert project.mllib("schedules", "install", "--dir", str(units)).returncode == 2

    cron = project.mllib("schedules", "install", "--cron")
    assert cron.returncode == 0, cron.output
    line = cron.stdout.strip()
    fields = line.split(" ", 5)
    assert fields[:5] == ["*"] * 5
    # cron runs the command with sh from the user's home: run it so.
    ran = subprocess.run(["sh", "-c", fields[5]], cwd=tmp_path, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    log = (project.root / ".mllib/schedules/run-due.log").read_text()
    assert "succeeded: sentiment v1" in log
    assert project.last_run()["action"] == "evaluate"


def test_a_due_schedule_is_claimed_once_and_keeps_its_cadence(tmp_path: Path):
    from datetime import UTC, datetime, timedelta

    from mllib.schedules import records
    from mllib.workspace import Workspace

    (tmp_path / "mllib.toml").write_text('name = "x"\n')
    ws = Workspace.find(tmp_path)
    schedule = records.add(ws.registry, "x@prod", "1d")
    [due] = records.due(ws.registry)
    assert records.claim(ws.registry, due)
    assert not records.claim(ws.registry, due)  # a second runner with the same view does not
    assert records.due(ws.registry) == []
    moved = records.get(ws.registry, schedule.id)
    assert moved.last_run_at is not None
    first = datetime.fromisoformat(schedule.next_due_at.replace("Z", "+00:00"))
    assert moved.next_due_at.startswith((first + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"))

    # Three days off: the next run is once, and the time of day stays.
    at = datetime(2026, 1, 4, 11, tzinfo=UTC)
    assert records.next_time(datetime(2026, 1, 1, 10, tzinfo=UTC), at, 86400) == datetime(
        2026, 1, 5, 10, tzinfo=UTC
    )
    ws.registry.close()


def test_install_writes_the_units_where_systemd_looks_for_this_users_units(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """$XDG_CONFIG_HOME/systemd/user, else ~/.config/systemd/user: systemd's folder, which
    MLLIB_HOME (mllib's own files) does not move."""
    project.write("model.py", "class M:\n    def train(self):\n        pass\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for config, expected in (
        (None, tmp_path / "home" / ".config" / "systemd" / "user"),
        (tmp_path / "xdg", tmp_path / "xdg" / "systemd" / "user"),
    ):
        if config:
            monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
        else:
            monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
        result = project.mllib("schedules", "install")
        assert result.returncode == 0, result.output
        assert sorted(p.suffix for p in expected.iterdir()) == [".service", ".timer"]
    assert not (tmp_path / "mllib-home").exists()  # MLLIB_HOME, as the tests set it

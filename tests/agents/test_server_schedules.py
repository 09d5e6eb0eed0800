"""Scheduled evaluations on a team server whose agents are the sshd lab's hosts: `mllib evaluate
--model NAME@prod --every 1d` registers the schedule on the server, which evaluates the version
the name means at each of its runs (`mllib models alias NAME:2 prod` moved it meanwhile) on the
newest version of the dataset, each a real run on an agent; it shows how each went in `mllib
schedules list|show` and the trend in `mllib models show` (read from the server), and reports a
broken gate to Sentry (a local HTTP endpoint stands in for Sentry's ingest: its cloud cannot be
reached from tests). Each run gets the user's `.env.remote` values, which the server keeps
sealed and never answers."""

from __future__ import annotations

import json
import time

import pytest
from conftest import MODEL
from sshlab import wait_for
from test_team_server import cli, person, show, submit
from test_team_server import dispatching as dispatching  # the fixture, used by name

from mllib.server.main import database
from mllib.server.settings import ServerHome
from tests.monitoring.sentry_ingest import SentryIngest, exception_of
from tests.server.test_schedules import make_due

TERMINAL = ("succeeded", "failed", "cancelled", "breached")
TOKEN = "tok-7f3a9c1e"  # a secret of the user's .env.remote
# evaluate() says whether the run got the secret (1.0), never the secret itself
SECRET_MODEL = MODEL.replace("import time", "import os\nimport time").replace(
    'return {"total": self.total}',
    'return {"total": self.total, "token": float(os.environ.get("EVAL_TOKEN") == '
    + repr(TOKEN)
    + ")}",
)


def _json(done) -> object:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _trained(server, root, env, *params: str) -> dict:
    run_id = submit(root, env, *params)
    wait_for(lambda: show(server, "ana", run_id)["status"] in TERMINAL[:3], timeout=300,
             interval=1.0, what="the training run to end")  # fmt: skip
    data = show(server, "ana", run_id)
    assert data["status"] == "succeeded", data
    return data


def _upload(root, env, text: str) -> None:
    data = root.parent / "evals"
    data.mkdir(exist_ok=True)
    (data / "rows.csv").write_text(text)
    assert cli(root, env, "data", "upload", str(data), "--name", "evals").returncode == 0


def ticked_log(root, env, run: dict) -> str:
    return cli(root, env, "runs", "logs", run["run_id"]).stdout


def _last(root, env) -> dict:
    [row] = _json(cli(root, env, "schedules", "list", "--json"))
    return row


@pytest.mark.timeout(900)  # three trainings, four evaluations and some thirty `mllib` commands
def test_evaluate_every_on_the_server_follows_the_newest_version_and_dataset(request, tmp_path):
    server = request.getfixturevalue("dispatching")
    with SentryIngest() as ingest:
        server.stop()
        server.start({"SENTRY_DSN": ingest.dsn})  # the server's own DSN: it alerts
        _schedule_and_follow(server, ingest, tmp_path)


def _schedule_and_follow(server, ingest: SentryIngest, tmp_path) -> None:
    ana, env = person(tmp_path, server, "ana")
    (ana / "model.py").write_text(SECRET_MODEL)
    (ana / ".env.remote").write_text(f"EVAL_TOKEN={TOKEN}\n")
    _upload(ana, env, "x\n1\n")
    first = _trained(server, ana, env, "--steps=3")  # v1: evaluate() gives total 3
    model = first["model"]
    promoted = cli(ana, env, "models", "alias", f"{model}:1", "prod")  # on the server
    assert promoted.returncode == 0 and f"{model}@prod now names v1." in promoted.stderr

    made = cli(ana, env, "evaluate", "--model", f"{model}@prod", "--data", "eval=evals",
               "--fail-under", "total=5", "--every", "1d")  # fmt: skip
    assert made.returncode == 0, made.stderr
    schedule_id = made.stdout.strip().splitlines()[-1]
    assert f"Scheduled {schedule_id} on the team server: every 1d" in made.stderr
    assert f"Now that is {model}:1" in made.stderr and TOKEN not in made.stdout + made.stderr
    # its first evaluation runs now, on an agent: v1 breaks the gate
    row = wait_for(lambda: (r := _last(ana, env))["last"]["status"] in TERMINAL and r,
                   timeout=300, interval=1.0, what="the first evaluation to end")  # fmt: skip
    assert row["model_ref"] == f"{model}@prod" and row["every"] == "1d"
    assert row["last"]["status"] == "breached" and row["last"]["version"] == 1
    assert row["last"]["eval_metrics"] == {"total": 3.0, "token": 1.0}
    assert row["last"]["breaches"] == ["total 3 is under 5"]
    table = cli(ana, env, "schedules", "list")
    assert schedule_id in table.stdout and f"{model}@prod (v1)" in table.stdout
    assert "breached" in table.stdout and "total=3 (total 3 is under 5)" in table.stdout
    [event] = ingest.wait_events(1)  # the server alerts, once
    assert exception_of(event)["type"] == "EvaluationBelowThreshold"
    assert exception_of(event)["value"] == f"Scheduled evaluation of {model}:1: total 3 is under 5"
    tags = event["tags"]
    assert tags["failure_class"] == "evaluation_below_threshold" and TOKEN not in ingest.raw()
    assert (tags["schedule"], tags["run_id"]) == (schedule_id, row["last"]["run_id"])
    assert (tags["model"], tags["version"], tags["user"]) == (model, "1", "ana")

    # a newer version promoted and a newer dataset meanwhile: the next run evaluates them
    _trained(server, ana, env, "--steps=5")  # v2: total 10
    moved = cli(ana, env, "models", "alias", f"{model}:2", "prod")
    assert f"{model}@prod now names v2 (moved from v1)." in moved.stderr
    _upload(ana, env, "x\n1\n2\n")
    make_due(server, schedule_id, 5)

    def second() -> dict | None:
        runs = _json(cli(ana, env, "schedules", "show", schedule_id, "--json"))["runs"]
        return runs[0] if len(runs) == 2 and runs[0]["status"] in TERMINAL else None

    ticked = wait_for(second, timeout=300, interval=1.0, what="the ticker's evaluation to end")
    assert ticked["status"] == "succeeded" and ticked["version"] == 2
    assert ticked["eval_metrics"] == {"total": 10.0, "token": 1.0} and ticked["breaches"] == []
    shown = _json(cli(ana, env, "runs", "show", ticked["run_id"], "--json"))
    assert shown["action"] == "evaluate" and shown["user"] == "ana"
    assert [(d["name"], d["version"]) for d in shown["datasets"]] == [("evals", 2)]
    time.sleep(6)  # a tick after it ended: a passed gate is no alert
    assert len(ingest.events()) == 1
    # the secret is sealed in the server's database, and no answer holds it
    reg = database(ServerHome(server.home))
    try:
        [stored] = reg.query("SELECT sealed_env FROM server_schedules")
    finally:
        reg.close()
    assert stored["sealed_env"] and TOKEN not in stored["sealed_env"]
    shown_schedule = cli(ana, env, "schedules", "show", schedule_id, "--json")
    assert TOKEN not in shown_schedule.stdout and TOKEN not in ticked_log(ana, env, ticked)

    queued = cli(ana, env, "schedules", "run-now", schedule_id)
    assert queued.returncode == 0, queued.stderr
    again = queued.stdout.strip().splitlines()[-1]
    wait_for(lambda: show(server, "ana", again)["status"] in TERMINAL[:3], timeout=300,
             interval=1.0, what="the run-now evaluation to end")  # fmt: skip
    # the trend in `mllib models show`: each version's evaluations the server ran
    v1 = _json(cli(ana, env, "models", "show", f"{model}:1", "--json"))
    assert [h["eval_metrics"]["total"] for h in v1["history"]] == [3.0]
    v2 = _json(cli(ana, env, "models", "show", f"{model}:2", "--json"))
    assert [h["run_id"] for h in v2["history"]] == [ticked["run_id"], again]
    text = cli(ana, env, "models", "show", f"{model}:2").stdout
    assert "Trend (2 evaluations" in text and "total  ▅▅  10 → 10" in text
    [listed] = _json(cli(ana, env, "models", "list", "--json"))
    assert (listed["name"], listed["versions"], listed["aliases"]) == (model, 2, {"prod": 2})
    removed = cli(ana, env, "schedules", "rm", schedule_id)
    assert removed.returncode == 0 and schedule_id in removed.stderr
    assert _json(cli(ana, env, "schedules", "list", "--json")) == []

    unknown = cli(ana, env, "evaluate", "--model", "nothing@prod", "--every", "1d")
    assert unknown.returncode == 4 and "No model 'nothing' on the team server" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 2

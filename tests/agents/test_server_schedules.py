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
import re
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

    # run-now follows the run there and says how it went, as a local run-now does
    queued = cli(ana, env, "schedules", "run-now", schedule_id, timeout=300)
    assert queued.returncode == 0, queued.stderr
    [(again, values)] = re.findall(
        rf"✔ {schedule_id} succeeded: {model} v2 run (\w+) (.*)", queued.stderr
    )
    assert sorted(values.split()) == ["token=1", "total=10"]
    assert show(server, "ana", again)["status"] == "succeeded"
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


# One replica of one process: the deployments here only need to go live.
DEPLOYING = """name = "steps"

[serve]
workers = 1
api_servers = 1

[deploy]
ready_timeout_s = 180
stop_grace_s = 15
"""


def _deploy(root, env, ref: str, reason: str) -> tuple[dict, str]:
    """`mllib deploy REF --env prod --force` (no staging load test: these are the test's); its
    --json answer and what it said on stderr."""
    done = cli(root, env, "deploy", ref, "--env", "prod", "--force", "--reason", reason,
               "--json", timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


@pytest.mark.timeout(1200)  # two trainings on agents, three deploys, five evaluations
def test_a_schedule_of_prod_follows_mllib_deploy_and_run_now_waits_for_its_gate(
    dispatching, tmp_path
):
    """A laptop deploys the versions the server's agents trained (`mllib deploy NAME:V` names
    the server's versions, fetched once and registered there with their run) and tells the
    server what went live on prod, so a schedule of NAME@prod there evaluates the version
    deployed (each run records the deployment); an alias set later wins, as does a deploy after
    it; a deploy while the server is down goes live all the same (by run id: a name needs the
    server), says so, and the next `mllib deploy` command sends it; `mllib deploy stop` leaves
    NAME@prod naming nothing. `schedules run-now` on the server waits for its run and gate, as
    a local one does."""
    server = dispatching
    ana, env = person(tmp_path, server, "ana")
    model = _trained(server, ana, env, "--steps=3")["model"]  # v1: evaluate() gives total 3
    _trained(server, ana, env, "--steps=5")  # v2: total 10
    laptop, env = person(tmp_path, server, "ana", machine="laptop")  # it never trained
    (laptop / "mllib.toml").write_text(DEPLOYING)
    missing = cli(laptop, env, "deploy", f"{model}:9", "--env", "prod")
    assert missing.returncode == 2, missing.stderr
    [line] = missing.stderr.strip().splitlines()
    assert f"No version 9 of model {model!r} on the team server (its versions of {model}: " in line
    assert "v2, v1; see `mllib models list`)" in line
    try:
        _follow_deploys(server, laptop, env, model)
    finally:
        cli(laptop, env, "deploy", "stop", "--env", "prod", timeout=180)


def _follow_deploys(server, ana, env, model: str) -> None:
    first, said = _deploy(ana, env, f"{model}:1", "the first release")
    v1 = _json(cli(ana, env, "models", "show", f"{model}:1", "--local", "--json"))["run_id"]
    assert re.search(
        rf"{model}:1 on the team server is {model} v1 \(run {v1}\): fetched \d+ file\(s\), "
        rf".*; here it is {model}:1",
        said,
    ), said
    assert f"Recorded on the team server: {model} v1 on prod." in said
    assert "does not hold" not in said  # its run is the server's
    made = cli(ana, env, "evaluate", "--model", f"{model}@prod", "--fail-under", "total=5",
               "--every", "1d")  # fmt: skip
    assert made.returncode == 0, made.stderr
    schedule_id = made.stdout.strip().splitlines()[-1]
    assert f"Now that is {model}:1, deployed in prod by ana" in made.stderr
    row = wait_for(lambda: (r := _last(ana, env))["last"]["status"] in TERMINAL and r,
                   timeout=300, interval=1.0, what="the first evaluation to end")  # fmt: skip
    last = row["last"]
    assert (last["status"], last["version"]) == ("breached", 1)
    assert (last["deployment_id"], last["env"]) == (first["deployment_id"], "prod")
    shown = _json(cli(ana, env, "runs", "show", last["run_id"], "--json"))
    deployed = shown["deployment"]
    assert (deployed["id"], deployed["model"], deployed["version"], deployed["env"]) == (
        first["deployment_id"], model, 1, "prod",
    )  # fmt: skip
    text = cli(ana, env, "runs", "show", last["run_id"]).stdout
    assert f"deployed:  {model} v1 on prod (deployment {first['deployment_id']} by ana)" in text

    # v2 deployed on prod: the next tick evaluates v2, and its run says which deployment
    second, said = _deploy(ana, env, f"{model}:2", "v2 is better")
    assert f"Recorded on the team server: {model} v2 on prod." in said and "fetched" in said
    make_due(server, schedule_id, 5)

    def ticked() -> dict | None:
        runs = _json(cli(ana, env, "schedules", "show", schedule_id, "--json"))["runs"]
        return runs[0] if len(runs) == 2 and runs[0]["status"] in TERMINAL else None

    run = wait_for(ticked, timeout=300, interval=1.0, what="the ticker's evaluation to end")
    assert (run["status"], run["version"], run["eval_metrics"]) == ("succeeded", 2, {"total": 10})
    assert (run["deployment_id"], run["env"]) == (second["deployment_id"], "prod")
    listed = _json(cli(ana, env, "runs", "list", "--json"))
    assert run["run_id"] in [r["id"] for r in listed if r["action"] == "evaluate"]
    shown = _json(cli(ana, env, "runs", "show", run["run_id"], "--json"))
    assert (shown["deployment"]["id"], shown["deployment"]["version"]) == (
        second["deployment_id"], 2,
    )  # fmt: skip
    last = _last(ana, env)["last"]
    assert (last["run_id"], last["version"]) == (run["run_id"], 2)
    table = cli(ana, env, "schedules", "list").stdout
    assert f"{model}@prod (v2)" in table and "succeeded" in table

    # run-now waits for its run and gate there, and exits as a local run-now does
    passed = cli(ana, env, "schedules", "run-now", schedule_id, timeout=300)
    assert passed.returncode == 0, passed.stderr
    assert re.search(
        rf"✔ {schedule_id} succeeded: {model} v2 in prod run \w+ total=10", passed.stderr
    )
    moved = cli(ana, env, "models", "alias", f"{model}:1", "prod")  # after the deploy: it wins
    assert moved.returncode == 0, moved.stderr
    broken = cli(ana, env, "schedules", "run-now", schedule_id, timeout=300)
    assert broken.returncode == 1, broken.stderr
    assert re.search(rf"✘ {schedule_id} breached: {model} v1 run \w+ total=3\n", broken.stderr)
    assert "  total 3 is under 5" in broken.stderr
    detached = cli(ana, env, "schedules", "run-now", schedule_id, "--detach")
    assert detached.returncode == 0, detached.stderr
    assert show(server, "ana", detached.stdout.strip().splitlines()[-1])["action"] == "evaluate"

    # the server down: the deploy goes live all the same and says so in one line; the next
    # `mllib deploy` command sends it, and NAME@prod follows it again (later than the alias)
    server.stop()
    down = cli(ana, env, "deploy", f"{model}:1", "--env", "prod", "--force", "--reason", "v1")
    assert down.returncode == 1, down.stderr
    [line] = down.stderr.strip().splitlines()
    assert "Cannot reach the team server at" in line and line.endswith("nothing was deployed")
    third, said = _deploy(ana, env, v1, "back to v1")  # its run id: here already
    assert third["version"] == 1 and third["state"] == "live"
    [line] = [x for x in said.splitlines() if "Not recorded on the team server yet" in x]
    assert f"{model} v1 on prod; the next `mllib deploy` command" in line
    server.start()
    status = cli(ana, env, "deploy", "status")
    assert status.returncode == 0 and f"Recorded on the team server: {model} v1 on prod." in (
        status.stderr
    )
    again = cli(ana, env, "schedules", "run-now", schedule_id, "--detach")
    queued = _json(cli(ana, env, "runs", "show", again.stdout.strip().splitlines()[-1], "--json"))
    assert queued["deployment"]["id"] == third["deployment_id"]

    # stopped: the server's NAME@prod names nothing, and the schedule says so in one line
    stopped = cli(ana, env, "deploy", "stop", "--env", "prod", timeout=180)
    assert f"Recorded on the team server: stopped {model} v1 on prod." in stopped.stderr
    nothing = cli(ana, env, "schedules", "run-now", schedule_id, "--detach")
    assert nothing.returncode == 4, nothing.stderr
    assert f"{model}@prod: nothing is deployed there (stopped by ana at " in nothing.stderr

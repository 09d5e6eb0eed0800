"""A team server dispatching to real agents (the sshd lab's hosts): two people submit a burst
that shares the fleet fairly and completes with records, metrics and logs; kill -9 of the server
mid-burst loses nothing; an agent cut off mid-run has its lease expire and the run completes on
the other agent, both attempts recorded. The server runs as a real process on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import MODEL
from helpers import mllib
from sshlab import wait_for

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from prometheus_client.utils import floatToGoString  # noqa: E402

from mllib.server.metrics import RUN_BUCKETS  # noqa: E402
from tests.server.conftest import make_server  # noqa: E402
from tests.server.test_api import _epoch  # noqa: E402
from tests.serving.test_serve import samples  # noqa: E402

TERMINAL = ("succeeded", "failed", "cancelled")


def person(
    tmp_path: Path, server, name: str, machine: str | None = None
) -> tuple[Path, dict[str, str]]:
    """A person's own project and MLLIB_HOME (on `machine`: another of theirs), logged in to the
    server."""
    root = tmp_path / (machine or name)
    (root / "home").mkdir(parents=True)
    (root / "model.py").write_text(MODEL)
    (root / "mllib.toml").write_text('name = "steps"\n')
    env = {"MLLIB_HOME": str(root / "home")}
    done = cli(root, env, "login", server.url, input=server.tokens[name] + "\n")
    assert done.returncode == 0, done.stderr
    return root, env


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **extra}


def cli(
    root: Path, env: dict[str, str], *args: str, input: str | None = None, timeout: float = 120
):
    """The real `mllib` as one person runs it (their project, their MLLIB_HOME)."""
    return subprocess.run(
        [sys.executable, "-m", "mllib", *args], cwd=root, env=_env(env), input=input,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def submit(root: Path, env: dict[str, str], *params: str) -> str:
    done = cli(root, env, "train", "model.py", "--remote", "--detach", *params)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def show(server, user: str, run_id: str) -> dict:
    with server.client(user) as http:
        return http.get(f"/api/v1/runs/{run_id}").json()


@pytest.fixture
def dispatching(lab, tmp_path, request):
    """A server (on SQLite, or PostgreSQL when the test asks with `database`) whose agents are
    both lab hosts (one slot each), users ana and bo."""
    database = getattr(request, "param", "sqlite")
    if database == "postgresql":
        database = request.getfixturevalue("pg_cluster").new_database()
    server = make_server(tmp_path, database)
    (server.home / "mllib.toml").write_text(
        '[retry]\nmax_attempts = 2\nbackoff_s = 0.2\n[runtime]\nlocal = "process"\n'
    )
    for i, host in enumerate(lab.hosts):
        if host.sshd_pid is None:
            host.start()
        args = lab.spec_args(host)
        added = mllib(
            "server", "agents", "--dir", str(server.home), "add", f"h{i}", "--host", args["host"],
            "--port", str(args["port"]), "--user", args["user"], "--key", args["key"],
            "--gpus", "1", "--trust-host-key", timeout=300,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
    server.add_user("ana", "--admin")
    server.add_user("bo")
    server.start()
    yield server
    server.stop()
    for host in lab.hosts:
        for proc in host.processes():
            if "mllib" in " ".join(proc.info["cmdline"] or []):
                os.kill(proc.pid, 9)


@pytest.mark.parametrize("dispatching", ["sqlite", "postgresql"], indirect=True)
def test_two_people_share_the_fleet_fairly_and_lose_nothing_when_the_server_is_killed(
    dispatching, tmp_path
):
    server = dispatching
    ana, ana_env = person(tmp_path, server, "ana")
    bo, bo_env = person(tmp_path, server, "bo")
    runs = {"ana": [], "bo": []}
    for _ in range(3):  # ana's burst is queued first; bo's still gets every other slot
        runs["ana"].append(submit(ana, ana_env, "--steps=3", "--sleep_s=0.6"))
    for _ in range(3):
        runs["bo"].append(submit(bo, bo_env, "--steps=3", "--sleep_s=0.6"))
    wait_for(lambda: any(show(server, "ana", r)["status"] != "queued" for r in runs["ana"]),
             timeout=120, what="a run to start")  # fmt: skip
    server.kill()  # kill -9 during the burst: every acknowledged submission is still there
    waiting = [r for ids in runs.values() for r in ids]
    restarted = time.monotonic()
    server.start()
    ready = time.monotonic() - restarted
    with server.client("ana") as http:  # dispatching resumes: a waiting run is started
        before = {r: http.get(f"/api/v1/runs/{r}").json()["attempts"] for r in waiting}
        wait_for(
            lambda: any(http.get(f"/api/v1/runs/{r}").json()["attempts"] != before[r]
                        for r in waiting),
            timeout=30, interval=0.02, what="dispatching to resume",
        )  # fmt: skip
    print(
        f"\nserver answered {ready:.2f} s after its restart; it started another attempt "
        f"{time.monotonic() - restarted:.2f} s after the restart"
    )
    with server.client("ana") as http:
        everyone = {r["id"] for r in http.get("/api/v1/runs", params={"all": True}).json()}
    assert set(runs["ana"]) | set(runs["bo"]) <= everyone and len(everyone) == 6

    def finished() -> bool:
        return all(
            show(server, who, r)["status"] in TERMINAL for who, ids in runs.items() for r in ids
        )

    wait_for(finished, timeout=300, interval=1.0, what="every run to end")
    records = {r: show(server, who, r) for who, ids in runs.items() for r in ids}
    assert {d["status"] for d in records.values()} == {"succeeded"}, records
    for data in records.values():
        assert data["metrics"]["loss"] == pytest.approx(1 / 3)
        assert data["host"] in ("h0", "h1") and data["attempts"]
    # fair share: by start time, the users alternate once both have runs waiting
    order = sorted(records.values(), key=lambda d: d["started_at"])
    users = [d["user"] for d in order]
    assert users[:4].count("bo") >= 1 and users.count("bo") == 3
    # the server's /metrics (no token) counts them: finished, timed, and the agents now free
    # (each agent asked now: since its restart the server had talked to those it needed only)
    with server.client("ana") as http:
        assert http.get("/api/v1/agents", params={"check": True}).status_code == 200
    metrics = samples(httpx.get(f"{server.url}/metrics", timeout=10).text)
    assert metrics[("mllib_runs", (("status", "succeeded"),))] == 6
    assert metrics[("mllib_submissions_total", ())] == 6
    durations = [_epoch(d["ended_at"]) - _epoch(d["started_at"]) for d in records.values()]
    ran = (("status", "succeeded"),)
    assert metrics[("mllib_run_duration_seconds_count", ran)] == 6
    assert metrics[("mllib_run_duration_seconds_sum", ran)] == pytest.approx(
        sum(durations), abs=0.01
    )
    for bound in (*RUN_BUCKETS, float("inf")):
        le = floatToGoString(bound)
        under = sum(d <= bound for d in durations)
        assert metrics[("mllib_run_duration_seconds_bucket", (("le", le), *ran))] == under
    assert metrics[("mllib_queue_wait_seconds_count", ())] == 6
    assert metrics[("mllib_agents", (("state", "reachable"),))] == 2
    assert metrics[("mllib_agent_slots", (("state", "busy"),))] == 0
    assert metrics[("mllib_agent_slots", (("state", "free"),))] == 2
    # each sees their own runs only; the CLI prints the same JSON as locally
    mine = cli(bo, bo_env, "runs", "list", "--json")
    assert {r["id"] for r in json.loads(mine.stdout)} == set(runs["bo"])
    log = cli(bo, bo_env, "runs", "logs", runs["bo"][0])
    assert "step 2" in log.stdout and "done" in log.stdout
    other = cli(bo, bo_env, "runs", "show", runs["ana"][0])
    assert other.returncode == 4 and len(other.stderr.strip().splitlines()) == 2


def test_an_agent_cut_off_mid_run_loses_its_lease_and_the_run_completes_elsewhere(
    dispatching, lab, tmp_path
):
    server = dispatching
    settings = (server.home / "server.json").read_text()
    assert '"lease_s": 30.0' in settings
    server.stop()
    (server.home / "server.json").write_text(settings.replace('"lease_s": 30.0', '"lease_s": 3.0'))
    server.start()
    ana, ana_env = person(tmp_path, server, "ana")
    run_id = submit(ana, ana_env, "--steps=8", "--sleep_s=0.5")
    first = wait_for(lambda: show(server, "ana", run_id).get("host") or None, timeout=120,
                     what="the run to be placed")  # fmt: skip
    host = lab.hosts[int(first[1])]
    wait_for(lambda: show(server, "ana", run_id)["status"] == "running", timeout=60)
    host.stop()  # the agent is cut off: no more answers, so no heartbeats
    try:
        data = wait_for(
            lambda: (d := show(server, "ana", run_id))["status"] in TERMINAL and d,
            timeout=240,
            interval=1.0,
            what="the run to complete elsewhere",
        )
    finally:
        host.start()
    assert data["status"] == "succeeded", data
    attempts = data["attempts"]
    assert [a["agent"] for a in attempts] == [first, "h1" if first == "h0" else "h0"]
    assert attempts[0]["status"] == "failed" and "stopped answering" in attempts[0]["reason"]
    assert attempts[0]["failure_class"] == "system_error"


def test_the_server_answers_health_and_documents_its_api(dispatching):
    schema = httpx.get(f"{dispatching.url}/openapi.json").json()
    assert "/api/v1/runs" in schema["paths"] and "/api/v1/queue" in schema["paths"]


def test_the_server_lists_its_agents_with_the_runs_holding_them_and_the_dashboard_shows_them(
    dispatching, lab, tmp_path, monkeypatch
):
    """GET /api/v1/agents and the dashboard's Queue pane while a run holds an agent; a third
    agent (lab host h0's sshd, with a key file that does not exist) does not answer, and why is
    told without the key's path."""
    server = dispatching
    args = lab.spec_args(lab.hosts[0])
    server.stop()
    with open(server.home / "mllib.toml", "a") as toml:
        toml.write(
            f'[[agents]]\nname = "nokey"\nhost = "{args["host"]}"\nport = {args["port"]}\n'
            f'user = "{args["user"]}"\nkey = "/no/such/dir/id_secret_key"\ngpus = 1\n'
        )
    server.start()
    ana, ana_env = person(tmp_path, server, "ana")
    bo, bo_env = person(tmp_path, server, "bo")
    run_id = submit(ana, ana_env, "--steps=30", "--sleep_s=0.5")
    wait_for(lambda: show(server, "ana", run_id)["status"] == "running", timeout=120,
             what="the run to start")  # fmt: skip
    where = show(server, "ana", run_id)["host"]
    with server.client("bo") as http:
        answer = http.get("/api/v1/agents", params={"check": True})
    assert answer.status_code == 200 and "id_secret_key" not in answer.text
    agents = {a["name"]: a for a in answer.json()}
    assert set(agents) == {"h0", "h1", "nokey"}
    assert agents[where]["running"] == [{"run_id": None, "user": "ana", "gpus": 1}]  # not bo's
    assert (agents[where]["used"], agents[where]["slots"], agents[where]["gpus"]) == (1, 1, 1)
    other = "h1" if where == "h0" else "h0"
    assert agents[other]["running"] == [] and agents[other]["reachable"] is True
    assert agents[where]["reachable"] is True and agents["nokey"]["reachable"] is False
    assert "Cannot open an SSH session to agent nokey" in agents["nokey"]["problem"]
    assert "(its key)" in agents["nokey"]["problem"]  # the missing file's path, taken out
    with server.client("ana") as http:  # an admin sees every run's id
        mine = {a["name"]: a for a in http.get("/api/v1/agents").json()}
    assert mine[where]["running"] == [{"run_id": run_id, "user": "ana", "gpus": 1}]

    from mllib.workspace import Workspace
    from tests.dashboard.conftest import cells, drive, make_app

    monkeypatch.setenv("MLLIB_HOME", bo_env["MLLIB_HOME"])  # bo's login, as his dashboard has it
    monkeypatch.delenv("MLLIB_SERVER", raising=False)
    app = make_app(Workspace.find(bo), now=time.time())

    async def steps(pilot):
        from textual.widgets import DataTable

        await pilot.press("2")
        table = pilot.app.query_one("#agents", DataTable)
        for _ in range(200):
            await pilot.app.workers.wait_for_complete()
            await pilot.pause(0.05)
            if table.row_count == 3:
                break
        rows = {r[0]: r for r in cells(table)}
        # AGENT, ADDRESS, GPUS, SLOTS, OCCUPIED BY, REACHABLE: as the server last found them
        assert rows[where][2:] == ["1", "1/1", "ana", "yes"]
        assert rows[other][2:] == ["1", "0/1", "-", "yes"]
        assert rows["nokey"][5].startswith("no: Cannot open an SSH session to agent nokey")

    drive(app, steps)
    with server.client("ana") as http:
        assert http.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200


def test_the_dashboards_runs_pane_reads_the_team_server_live_and_cancels_there(
    dispatching, tmp_path, monkeypatch
):
    """The Runs pane of ana's dashboard on another machine of hers (whose registry holds no run)
    shows the server's runs, bo's included (she is an admin); bo's run's newest loss reaches its
    row through the deltas; the run's screen shows its params, curve and log from the server;
    cancelling it there (x, then y) cancels it on the server."""
    from mllib.client.http import Server
    from mllib.client.views import runs_window
    from mllib.display import fmt_value
    from mllib.workspace import Workspace
    from tests.dashboard.conftest import cells, drive, make_app, until

    server = dispatching
    ana, ana_env = person(tmp_path, server, "ana")
    bo, bo_env = person(tmp_path, server, "bo")
    laptop, laptop_env = person(tmp_path, server, "ana", machine="ana-laptop")
    bos = submit(bo, bo_env, "--steps=120", "--sleep_s=1")
    anas = submit(ana, ana_env, "--steps=120", "--sleep_s=1")
    wait_for(lambda: "loss" in show(server, "bo", bos)["metrics"], timeout=120,
             what="bo's run to log")  # fmt: skip
    as_bo = Server(server.url, server.tokens["bo"])
    with as_bo.http:
        bo_sees = runs_window(as_bo, metric="loss")
    assert [r["id"] for r in bo_sees["runs"]] == [bos]  # not ana's: only an admin sees others'

    monkeypatch.setenv("MLLIB_HOME", laptop_env["MLLIB_HOME"])  # her login on the laptop
    monkeypatch.delenv("MLLIB_SERVER", raising=False)
    app = make_app(Workspace.find(laptop), now=time.time(), metric="loss")
    assert app.data.runs.remote

    async def steps(pilot):
        table = app.runs.table
        rows = await until(pilot, lambda: len(table.rows) == 2 and cells(table), "the window")
        # ID, MODEL, ACTION, STATUS, WHERE, USER, DURATION, METRIC, trend: newest first
        assert [(r[0].strip(), r[5]) for r in rows] == [(anas, "ana"), (bos, "bo")]
        first = cells(table)[1][7]

        def newest() -> bool:  # the row shows the value the server holds now, a newer one
            shown = cells(table)[1][7]
            return shown != first and shown == fmt_value(show(server, "bo", bos)["metrics"]["loss"])

        await until(pilot, newest, "bo's newest loss")
        await pilot.press("down", "enter")  # bo's run
        screen = app.screen
        assert screen.run_id == bos
        info = screen.query_one("#info-text")  # read in the background
        await until(pilot, lambda: "steps: 120" in str(info.render()), "the run's params")
        log = screen.query_one("#log")
        await until(pilot, lambda: any(line.startswith("step ") for line in log.lines), "log")
        assert screen.metric == "loss" and screen.curves.curves["loss"].count >= 2
        await pilot.press("x")
        await pilot.press("y")
        await until(pilot, lambda: show(server, "bo", bos)["status"] == "cancelled", "cancel")
        await pilot.press("escape")
        await until(pilot, lambda: cells(table)[1][3] == "cancelled", "the row's new status")
        assert cells(table)[0][3] == "running"  # ana's goes on

    drive(app, steps)
    with server.client("ana") as http:
        assert http.post(f"/api/v1/runs/{anas}/cancel").status_code == 200
    assert not Workspace.find(laptop).registry.query("SELECT id FROM runs")  # all from the server


@pytest.mark.parametrize("dispatching", ["sqlite", "postgresql"], indirect=True)
def test_a_dataset_uploaded_to_the_server_reaches_its_agent_and_is_sent_once(dispatching, tmp_path):
    from test_remote_datasets import MODEL as READER

    server = dispatching
    removed = mllib("server", "agents", "--dir", str(server.home), "rm", "h1")
    assert removed.returncode == 0, removed.stderr  # one agent: the second run goes there too
    ana, ana_env = person(tmp_path, server, "ana")
    (ana / "model.py").write_text(READER)
    data = tmp_path / "images"  # outside the project: not part of its code snapshot
    (data / "cats").mkdir(parents=True)
    unique = os.urandom(8).hex()  # the lab's agents keep chunks of earlier tests' runs
    (data / "cats" / "a.txt").write_text(f"cat a {unique}\n")
    (data / "b.txt").write_text(f"b {unique}\n")
    (data / "big.bin").write_bytes(os.urandom(10_000_000))  # 10 MB: two chunks
    uploaded = cli(ana, ana_env, "data", "upload", str(data), "--name", "images", "--json")
    assert uploaded.returncode == 0, uploaded.stderr
    assert json.loads(uploaded.stdout)["chunks_stored"] == 4
    assert not (ana / ".mllib" / "store" / "datasets").exists()  # nothing kept on the laptop

    first = cli(ana, ana_env, "train", "model.py", "--remote", "--data", "train=images",
                timeout=240)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert f"FIRST b {unique}" in first.stdout and "WRITABLE False" in first.stdout
    first_id = json.loads(cli(ana, ana_env, "runs", "list", "--json").stdout)[0]["id"]
    record = show(server, "ana", first_id)
    assert record["status"] == "succeeded" and record["metrics"]["files"] == 3
    # the dispatcher sent the agent every chunk and the manifest...
    assert "dataset images@1: sent 5 chunk(s)" in record["runtime_note"], record["runtime_note"]
    assert "0 already there" in record["runtime_note"]
    # ...and a second run on that agent nothing: its store keeps them
    second = submit(ana, ana_env, "--data", "train=images@1")
    data2 = wait_for(lambda: (d := show(server, "ana", second))["status"] in TERMINAL and d,
                     timeout=240, interval=1.0, what="the second run to end")  # fmt: skip
    assert data2["status"] == "succeeded" and data2["metrics"]["files"] == 3, data2
    assert "dataset images@1: sent 0 chunk(s)" in data2["runtime_note"]
    assert "5 already there" in data2["runtime_note"]
    # the local record mirrors the server's metric points
    local = json.loads(cli(ana, ana_env, "runs", "show", first_id, "--json", "--local").stdout)
    assert local["status"] == "succeeded" and local["metric_summary"]["files"]["last"] == 3


@pytest.mark.timeout(900)  # the lab's server and agents, 1 trial, then 9 from two machines at once
def test_two_machines_driving_one_study_run_each_trial_once_and_reach_its_trials(
    dispatching, tmp_path
):
    server = dispatching
    ana, ana_env = person(tmp_path, server, "ana")
    laptop, laptop_env = person(tmp_path, server, "ana", machine="ana-laptop")
    started = cli(
        ana, ana_env, "tune", "model.py", "--remote", "--param", "steps=int:1:30",
        "--metric", "total", "--trials", "1", "--sampler", "random", "--seed", "2",
        "--name", "both", "--sleep_s=0.2", timeout=300,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    # Both machines resume it to 10 trials at the same time, each driving 1 trial at once.
    drivers = [
        subprocess.Popen(
            [sys.executable, "-m", "mllib", "tune", "resume", "both", "--trials", "10"],
            cwd=root,
            env=_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for root, env in ((ana, ana_env), (laptop, laptop_env))
    ]
    # The first to run out of trials to start does not mark the study finished while the other
    # still runs one (its own show, read on the other machine, says running).
    deadline = time.monotonic() + 800
    while all(d.poll() is None for d in drivers) and time.monotonic() < deadline:
        time.sleep(0.05)
    first = next(i for i, d in enumerate(drivers) if d.poll() is not None)
    meanwhile = cli(laptop, laptop_env, "tune", "show", "both", "--json")
    if drivers[1 - first].poll() is None:  # still driving after the show was read
        assert json.loads(meanwhile.stdout)["status"] == "running", meanwhile.stdout
    outputs = [driver.communicate(timeout=800) for driver in drivers]
    for driver, (_, stderr) in zip(drivers, outputs, strict=True):
        assert driver.returncode == 0, stderr
    study = json.loads(cli(ana, ana_env, "tune", "show", "both", "--json").stdout)
    there = json.loads(cli(laptop, laptop_env, "tune", "show", "both", "--json").stdout)
    assert study["status"] == there["status"] == "finished"
    trials = study["trials"]
    # Exactly the study's 10 trials, each numbered once, each its own run that ran once.
    assert [t["number"] for t in trials] == list(range(10)), trials
    assert study["counts"]["complete"] == 10, study["counts"]
    run_ids = [t["run_id"] for t in trials]
    assert len(set(run_ids)) == 10 and None not in run_ids
    with server.client("ana") as http:
        runs = http.get("/api/v1/runs", params={"limit": 100}).json()
    trained = [r for r in runs if r["id"] in run_ids]
    assert len(trained) == 10 and all(r["status"] == "succeeded" for r in trained)
    assert len(runs) == 10  # no trial's run was submitted twice
    # Both machines drove trials, none the same: each recorded the runs it submitted.
    mine = [
        {r["id"] for r in json.loads(cli(root, env, "runs", "list", "--local", "--json").stdout)}
        for root, env in ((ana, ana_env), (laptop, laptop_env))
    ]
    assert mine[0] and mine[1] and not mine[0] & mine[1]
    assert mine[0] | mine[1] == set(run_ids)


@pytest.mark.timeout(600)  # the lab's server and agents, 10 trials, then 2 more from a 2nd machine
def test_a_pruned_trial_is_cancelled_on_the_agent_the_server_gave_it(dispatching, tmp_path):
    from tests.tuning.test_tune import DIVERGING

    server = dispatching
    ana, ana_env = person(tmp_path, server, "ana")
    (ana / "model.py").write_text(DIVERGING)
    # The median pruner lets its first 5 trials finish; a diverging one after them is stopped.
    result = cli(
        ana, ana_env, "tune", "model.py", "--remote", "--param", "lr=choice:0.05,0.1,0.9",
        "--metric", "loss", "--trials", "10", "--parallel", "2", "--sampler", "random",
        "--seed", "4", "--name", "div", "--epochs=30", timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    study = json.loads(cli(ana, ana_env, "tune", "show", "div", "--json").stdout)
    pruned = [t for t in study["trials"] if t["state"] == "pruned"]
    assert pruned and study["counts"]["pruned"] == len(pruned), study["trials"]
    with server.client("ana") as http:
        queue = http.get("/api/v1/queue").json()
    assert not queue["queued"] and not queue["running"]
    for trial in pruned:
        shown = cli(ana, ana_env, "runs", "show", trial["run_id"], "--json", "--local")
        local = json.loads(shown.stdout)
        there = show(server, "ana", trial["run_id"])
        assert there["status"] == "cancelled", there
        assert there["attempts"][-1]["status"] == "cancelled"
        # stopped on its agent early: fewer points than the 30 epochs a full run logs
        assert there["metric_summary"]["loss"]["count"] < 30
        assert local["status"] == "cancelled" and local["failure_class"] == "pruned"
    # The study's Optuna journal is in the server's database, not a file in ana's project...
    assert not (ana / ".mllib" / "tune" / "journal.log").exists()
    with server.client("ana") as http:
        assert "div" in {s["name"] for s in http.get("/api/v1/studies").json()}
    with server.client("bo") as http:
        assert "div" not in {s["name"] for s in http.get("/api/v1/studies").json()}
    # ...so from another machine of ana's (a checkout of the project, her own login) it is the
    # same study: listed, shown with the same trials, and resumed there.
    laptop = tmp_path / "ana-laptop"
    (laptop / "home").mkdir(parents=True)
    (laptop / "model.py").write_text(DIVERGING)
    (laptop / "mllib.toml").write_text('name = "steps"\n')
    laptop_env = {"MLLIB_HOME": str(laptop / "home")}
    assert (
        cli(laptop, laptop_env, "login", server.url, input=server.tokens["ana"] + "\n").returncode
        == 0
    )
    listed = json.loads(cli(laptop, laptop_env, "tune", "list", "--json").stdout)
    assert [s["name"] for s in listed] == ["div"] and listed[0]["counts"] == study["counts"]
    there = json.loads(cli(laptop, laptop_env, "tune", "show", "div", "--json").stdout)
    same = ("number", "state", "value", "params", "run_id")
    assert [{k: t[k] for k in same} for t in there["trials"]] == [
        {k: t[k] for k in same} for t in study["trials"]
    ]
    assert there["best_value"] == study["best_value"]
    # the dashboard's tuning pane there shows the same trials
    from mllib.dashboard.data.studies import trials
    from mllib.workspace import Workspace

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLLIB_HOME", laptop_env["MLLIB_HOME"])
        shown = trials(Workspace.find(laptop), "div")
    assert [(t.number, t.state, t.value, t.run_id) for t in shown] == [
        (t["number"], t["state"], t["value"], t["run_id"]) for t in study["trials"]
    ]
    resumed = cli(laptop, laptop_env, "tune", "resume", "div", "--trials", "12", timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    after = json.loads(cli(ana, ana_env, "tune", "show", "div", "--json").stdout)
    finished = after["counts"]["complete"] + after["counts"]["pruned"] + after["counts"]["failed"]
    assert finished >= 12 and len(after["trials"]) >= 12
    # no trial finished before was lost or run again
    before = [{k: t[k] for k in same} for t in study["trials"]]
    assert [{k: t[k] for k in same} for t in after["trials"][: len(before)]] == before

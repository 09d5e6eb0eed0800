"""Deployments the team server is told of (`POST /api/v1/deployments`, which each `mllib deploy`
command and a controller finishing a promotion send when a server is configured): recorded once
whatever the retries, by the user who sent them, matched to the server's own version by identity
only (never by its number), a stop meaning nothing is deployed there, and a malformed one refused
with a one-line error (a real server on loopback, SQLite and PostgreSQL).
tests/agents/test_server_schedules.py deploys for real and follows a schedule of NAME@prod
through them."""

from __future__ import annotations

import httpx
import pytest

from mllib.credentials import save_login
from mllib.errors import NotFoundError
from mllib.registry.artifacts import register_model
from mllib.registry.db import Registry
from mllib.registry.runs import RunRecord, create_run, now
from mllib.server import evaluations
from mllib.server.main import database
from mllib.server.settings import ServerHome
from mllib.serving.control import records
from mllib.serving.control.reporting import RETRY_S, Reporter
from mllib.store import LocalBlobStore, put_tree
from tests.conftest import Project, wait_for
from tests.server.conftest import free_port
from tests.server.test_api import login

PATH = "/api/v1/deployments"
BODY = {
    "id": "d0test000001",
    "model": "iris",
    "version": 2,
    "run_id": "r0test000001",
    "env": "prod",
    "action": "deploy",
    "deployed_at": "2026-12-07T22:00:00Z",
}


def test_a_deployment_is_recorded_once_and_a_malformed_one_is_refused(team_server):
    with team_server.client("bo") as http:
        first = http.post(PATH, json=BODY)
        assert first.status_code == 200, first.text
        recorded = first.json()
        assert recorded["created"] is True and recorded["user"] == "bo"
        assert recorded["deployed_at"] == "2026-12-07T22:00:00.000000Z"
        assert recorded["known"] is False  # no run of the server's made iris v2
        again = http.post(PATH, json=BODY | {"version": 3})  # a retry: the first record stays
        assert again.status_code == 200 and again.json()["created"] is False
        assert again.json()["version"] == 2

        qa = http.post(PATH, json=BODY | {"id": "d0test000002", "env": "qa"})
        assert qa.status_code == 400 and qa.json()["error"] == "Unknown environment 'qa'"
        odd = http.post(PATH, json=BODY | {"id": "d0test000006", "action": "restart"})
        assert odd.status_code == 400 and odd.json()["error"] == "Unknown action 'restart'"
        when = http.post(PATH, json=BODY | {"id": "d0test000003", "deployed_at": "yesterday"})
        assert when.status_code == 400 and when.json()["error"] == "Not a time: 'yesterday'"
        extra = http.post(PATH, json=BODY | {"id": "d0test000004", "replicas": 3})
        assert extra.status_code == 422
    anonymous = httpx.post(team_server.url + PATH, json=BODY | {"id": "d0test000005"})
    assert anonymous.status_code == 401


CODE = "c" * 64  # the code tree both of the server's versions were trained with


def _server_versions(team_server) -> None:
    """Two versions of `ident` the server's own runs made (as its agents' runs record them)."""
    reg = database(ServerHome(team_server.home))
    try:
        for number, model in ((1, "1" * 64), (2, "2" * 64)):
            run = RunRecord(id=f"rsrvident{number}", model="ident", action="train",
                            status="succeeded", created_at=now(), code_hash=CODE)  # fmt: skip
            create_run(reg, run, {}, {})
            assert register_model(reg, "ident", run.id, model) == number
    finally:
        reg.close()


def _prod(team_server) -> evaluations.Target:
    """What a schedule of ident@prod on the server evaluates now."""
    reg = database(ServerHome(team_server.home))
    try:
        return evaluations.target(reg, "ident@prod")
    finally:
        reg.close()


def test_a_deployment_names_the_servers_version_by_identity_and_a_stop_means_none(
    team_server, model_project: Project
):
    """A laptop's v1 is not the server's v1: only the run that made it, or the same model files
    and code, name a server version; after a stop, NAME@prod names nothing until an alias or a
    deploy is set after it."""
    _server_versions(team_server)
    other = BODY | {"model": "ident", "version": 1, "run_id": "rlaptop00001", "code_hash": CODE}
    with team_server.client("bo") as http:
        first = http.post(PATH, json=other | {"id": "dident000001", "model_sha256": "9" * 64})
        assert first.status_code == 200, first.text
        assert first.json()["known"] is False  # the same number, another model
        with pytest.raises(NotFoundError) as unheld:
            _prod(team_server)
        assert unheld.value.message == (
            "ident@prod serves a version the team server does not hold (bo's v1, run "
            "rlaptop00001): it cannot evaluate it"
        )
        [served] = http.get("/api/v1/models/ident").json()["served"]
        assert (served["env"], served["held_version"], served["user"]) == ("prod", None, "bo")
        login(model_project, team_server, "bo")
        shown = model_project.mllib("models", "show", "ident")
        assert shown.returncode == 0, shown.output
        assert (
            "prod serves a version the team server does not hold (bo's v1, run rlaptop00001): "
            "its schedules of ident@prod cannot evaluate it"
        ) in shown.stdout
        same = other | {"id": "dident000002", "version": 7, "model_sha256": "2" * 64}
        same |= {"deployed_at": "2026-12-07T22:05:00Z"}
        assert http.post(PATH, json=same).json()["known"] is True  # its files and code
        target = _prod(team_server)
        assert target.version.ref == "ident:2" and target.deployment["id"] == "dident000002"
        [served] = http.get("/api/v1/models/ident").json()["served"]
        assert (served["version"], served["held_version"]) == (7, 2)  # its number here: 2
        # the same files built with other code are another version
        rebuilt = same | {"id": "dident000003", "code_hash": "d" * 64}
        assert http.post(PATH, json=rebuilt | {"deployed_at": "2026-12-07T22:06:00Z"}).json()[
            "known"
        ] is False  # fmt: skip

        stop = same | {"id": "dident000003-stop", "action": "stop"}
        stopped = http.post(PATH, json=stop | {"deployed_at": "2026-12-07T22:10:00Z"})
        assert stopped.status_code == 200 and stopped.json()["action"] == "stop"
        assert http.get("/api/v1/models/ident").json()["served"] == []
        with pytest.raises(NotFoundError) as none:
            _prod(team_server)
        assert none.value.message == (
            "ident@prod: nothing is deployed there (stopped by bo at 2026-12-07T22:10:00Z)"
        )
        aliased = http.post("/api/v1/models/aliases", json={"ref": "ident:1", "alias": "prod"})
        assert aliased.status_code == 200, aliased.text
        assert _prod(team_server).version.ref == "ident:1"  # the alias, set after the stop


def test_a_versions_files_are_answered_and_no_other_blob(team_server, tmp_path):
    """`mllib deploy NAME:V` fetches a server version's two trees blob by blob
    (mllib.client.model_fetch, run for real by tests/agents/test_server_schedules.py): the
    server answers what the version is and each blob of its trees, and no other of its store."""
    store = LocalBlobStore(ServerHome(team_server.home).store_path)
    trees = {}
    for name, text in (("model", "weights"), ("code", "class M: ..."), ("other", "a secret")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f.txt").write_text(text)
        trees[name] = put_tree(store, tmp_path / name)
    reg = database(ServerHome(team_server.home))
    try:
        run = RunRecord(id="rsrvfiles1", model="files", action="train", status="succeeded",
                        created_at=now(), code_hash=trees["code"].sha256, model_file="model.py",
                        model_class="M", user="ana")  # fmt: skip
        create_run(reg, run, {}, {})
        register_model(reg, "files", run.id, trees["model"].sha256)
    finally:
        reg.close()
    with team_server.client("bo") as http:
        info = http.get("/api/v1/models/files@latest/files").json()
        assert (info["name"], info["version"], info["run_id"]) == ("files", 1, "rsrvfiles1")
        assert (info["model_sha256"], info["code_hash"]) == (
            trees["model"].sha256, trees["code"].sha256,
        )  # fmt: skip
        blobs = "/api/v1/models/files/versions/1/blobs/"
        for tree in (trees["model"], trees["code"]):
            assert http.get(blobs + tree.sha256).status_code == 200  # its manifest
            [entry] = tree.files
            assert http.get(blobs + entry.sha256).content == store.get_bytes(entry.sha256)
        [secret] = trees["other"].files
        refused = http.get(blobs + secret.sha256)
        assert refused.status_code == 404 and "a secret" not in refused.text
        assert http.get(blobs + trees["other"].sha256).status_code == 404
        gone = http.get("/api/v1/models/files:4/files")
        assert gone.status_code == 404
        assert gone.json()["error"] == "No version 4 of model 'files' on the team server"


def test_a_controller_sends_in_the_background_and_an_unreachable_server_loses_nothing(
    team_server, tmp_path, monkeypatch
):
    """A controller's Reporter (what it finished by itself: a promotion) sends from a thread of
    its own; a server that cannot be reached leaves the record pending and is tried again
    RETRY_S later (never sooner), and then records it once."""
    monkeypatch.setenv("MLLIB_HOME", str(tmp_path / "home"))
    dead = f"http://127.0.0.1:{free_port()}"  # logged in, but nothing listens there
    save_login(dead, "tok-dead")
    save_login(team_server.url, team_server.tokens["bo"])
    path = tmp_path / "registry.db"
    reg = Registry.open(path)
    try:
        records.insert(reg, records.Deployment(
            id="dreport00001", env="prod", action="promote", state="live", model="rep",
            run_id="rrep00000001", artifact="a:b", created_at=now(), version=3,
            live_at=now(),
        ))  # fmt: skip
        reporter = Reporter(str(path), dead)
        reporter.due()
        reporter.tick(100.0)
        reporter.join(30)
        assert [c.id for c in records.unreported(reg)] == ["dreport00001"]  # kept
        reporter.url = team_server.url  # the server is back
        reporter.tick(100.0 + RETRY_S - 1)  # too soon: nothing is tried
        reporter.join(30)
        assert records.unreported(reg) != []
        reporter.tick(100.0 + RETRY_S)
        reporter.join(30)
        assert records.unreported(reg) == []
    finally:
        reg.close()
    assert _server_records(team_server, "rep") == [("promote", "prod", 3)]


# One replica of one process: the deployment here only needs to go live.
SERVING = """[serve]
workers = 1
api_servers = 1

[deploy]
ready_timeout_s = 180
stop_grace_s = 15
"""


def _server_records(team_server, model: str) -> list[tuple[str, str, int]]:
    """What the server was told of `model`: (action, env, version), oldest first."""
    reg = database(ServerHome(team_server.home))
    try:
        rows = reg.query(
            "SELECT action, env, version FROM server_deployments WHERE model = ? "
            "ORDER BY deployed_at, recorded_at",
            (model,),
        )
    finally:
        reg.close()
    return [(r["action"], r["env"], r["version"]) for r in rows]


@pytest.mark.parametrize("team_server", ["sqlite"], indirect=True)
def test_deploys_a_promotion_and_a_stop_reach_the_server_once(model_project: Project, team_server):
    """Real deploys with the server configured: `mllib deploy` sends what went live (this
    project's own version, which the server does not hold: the deploy says so), the controller
    sends the promotion it finishes by itself (no `mllib` command runs meanwhile), and `mllib
    deploy stop` sends the stop; nothing is sent twice. (~50 s: two deployments go live.)"""
    login(model_project, team_server, "bo")
    model_project.write("mllib.toml", SERVING)
    for epochs in ("--epochs=3", "--epochs=4"):
        trained = model_project.mllib("train", "model.py", "--local", epochs)
        assert trained.returncode == 0, trained.output
    try:
        # this project's versions: --local (with a server configured, names are the server's)
        done = model_project.mllib("deploy", "Basic:1", "--env", "staging", "--local", "--json")
        assert done.returncode == 0, done.output
        deployment = done.json()
        run_id = model_project.mllib("models", "show", "Basic:1", "--local", "--json").json()
        assert "  Recorded on the team server: Basic v1 on staging." in done.stderr
        assert (
            f"  The team server does not hold Basic v1 (run {run_id['run_id']}): its schedules "
            "of Basic@staging cannot evaluate what staging serves (`mllib deploy Basic:VERSION` "
            "deploys one it holds)."
        ) in done.stderr
        status = model_project.mllib("deploy", "status")
        assert status.returncode == 0 and "team server" not in status.stderr  # nothing left
        with team_server.client("bo") as http:
            again = http.post(PATH, json=BODY | {"id": deployment["deployment_id"]})
        assert again.json()["created"] is False and again.json()["model"] == "Basic"
        assert again.json()["env"] == "staging" and again.json()["version"] == 1

        canary = model_project.mllib(
            "deploy", "Basic:2", "--env", "staging", "--canary", "50", "--local"
        )
        assert canary.returncode == 0, canary.output
        promoted = model_project.mllib(
            "deploy", "promote", "--env", "staging", "--steps", "100", "--interval", "0"
        )
        assert promoted.returncode == 0, promoted.output
        wait_for(
            lambda: ("promote", "staging", 2) in _server_records(team_server, "Basic"),
            timeout=120, interval=0.5, what="the controller to send the promotion",
        )  # fmt: skip
        logs = model_project.mllib("deploy", "logs", "--env", "staging").stdout
        assert "recorded on the team server: promote of Basic v2 on staging" in logs

        stopped = model_project.mllib("deploy", "stop", "--env", "staging")
        assert stopped.returncode == 0, stopped.output
        assert "  Recorded on the team server: stopped Basic v2 on staging." in stopped.stderr
        assert _server_records(team_server, "Basic") == [
            ("deploy", "staging", 1), ("promote", "staging", 2), ("stop", "staging", 2),
        ]  # fmt: skip
        quiet = model_project.mllib("deploy", "status")
        assert quiet.returncode == 0 and "team server" not in quiet.stderr
    finally:
        model_project.mllib("deploy", "stop", "--env", "staging")

"""A tuning study's Optuna storage kept in the team server's database (SQLite and PostgreSQL): a
real server on loopback, real Optuna studies over its HTTP API (mllib.tuning.storage's
server_storage), written from two machines at once (two storages, each its own connection)."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest

from mllib.credentials import save_login
from mllib.tuning.storage import import_optuna, server_storage


def _objective(trial) -> float:
    x = trial.suggest_float("x", -5, 5)
    trial.report(x * x, step=1)
    return (x - 2) ** 2


def test_a_study_written_from_two_machines_is_one_study(team_server) -> None:
    optuna = import_optuna()
    save_login(team_server.url, team_server.tokens["ana"])
    name = f"s-{uuid.uuid4().hex[:8]}"
    laptop = optuna.create_study(
        study_name=name, storage=server_storage(team_server.url, name),
        sampler=optuna.samplers.RandomSampler(seed=1),
    )  # fmt: skip
    other = optuna.load_study(study_name=name, storage=server_storage(team_server.url, name))
    errors: list[BaseException] = []

    def optimize(study) -> None:
        try:
            study.optimize(_objective, n_trials=6)
        except BaseException as exc:  # the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=optimize, args=(s,)) for s in (laptop, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors

    # a third machine reads the same 12 trials, each numbered once, with their reports
    seen = optuna.load_study(study_name=name, storage=server_storage(team_server.url, name))
    trials = seen.get_trials()
    assert sorted(t.number for t in trials) == list(range(12))
    assert all(t.state.name == "COMPLETE" and t.intermediate_values for t in trials)
    assert seen.best_value == min(t.value for t in trials)
    assert seen.best_params == laptop.best_params
    with team_server.client("ana") as http:
        listed = {s["name"]: s for s in http.get("/api/v1/studies").json()}
    assert name in listed and listed[name]["entries"] > 12


def test_each_user_sees_only_their_own_studies(team_server) -> None:
    optuna = import_optuna()
    save_login(team_server.url, team_server.tokens["ana"])
    name = f"mine-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=server_storage(team_server.url, name))

    with team_server.client("bo") as http:
        assert name not in {s["name"] for s in http.get("/api/v1/studies").json()}
        assert http.get(f"/api/v1/studies/{name}/journal").json() == {"entries": []}
    save_login(team_server.url, team_server.tokens["bo"])
    with pytest.raises(KeyError):  # bo's storage has no such study: Optuna's own error
        optuna.load_study(study_name=name, storage=server_storage(team_server.url, name))


def test_a_retried_append_is_appended_once(team_server) -> None:
    body = {"entries": [{"op_code": 99, "n": 1}, {"op_code": 99, "n": 2}], "batch": "k" * 16}
    path = f"/api/v1/studies/retry-{uuid.uuid4().hex[:8]}/journal"
    with team_server.client("ana") as http:
        first = http.post(path, json=body)
        again = http.post(path, json=body)  # the first answer was lost: the client sends it again
        entries = http.get(path, params={"after": 1}).json()["entries"]

    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() == {"count": 2}
    assert entries == [{"op_code": 99, "n": 2}]


def test_bad_requests_are_refused_with_what_was_wrong(team_server) -> None:
    with team_server.client("ana") as http:
        bad_name = http.get("/api/v1/studies/..%2Fetc/journal")
        no_batch = http.post("/api/v1/studies/ok/journal", json={"entries": []})
    anonymous = httpx.get(f"{team_server.url}/api/v1/studies/ok/journal", timeout=30)

    assert bad_name.status_code in (404, 422)
    assert no_batch.status_code == 422 and "batch" in no_batch.text
    assert anonymous.status_code == 401


def test_a_study_neither_here_nor_on_the_server_is_not_found(team_server, project) -> None:
    project.write("mllib.toml", 'name = "p"\n')
    login = project.mllib("login", team_server.url, input=team_server.tokens["bo"] + "\n")
    assert login.returncode == 0, login.output

    shown = project.mllib("tune", "show", "nosuch")
    listed = project.mllib("tune", "list", "--json")

    assert shown.returncode != 0 and "No study 'nosuch'" in shown.stderr.splitlines()[0]
    assert listed.returncode == 0 and listed.json() == []

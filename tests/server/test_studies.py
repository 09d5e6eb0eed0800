"""A tuning study's Optuna storage kept in the team server's database (SQLite and PostgreSQL): a
real server on loopback, real Optuna studies over its HTTP API (mllib.tuning.storage's
server_storage), written from two machines at once (two storages, each its own connection)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mllib.credentials import save_login
from mllib.tuning.storage import import_optuna, server_storage


def _objective(trial) -> float:
    x = trial.suggest_float("x", -5, 5)
    trial.report(x * x, step=1)
    return (x - 2) ** 2


def _at_once(work: Callable[[Any], None], args: list[Any]) -> list[BaseException]:
    """`work(arg)` for each arg, each on a thread of its own (a machine), all at once; what
    they raised."""
    errors: list[BaseException] = []

    def run(arg: Any) -> None:
        try:
            work(arg)
        except BaseException as exc:  # the caller's assertion names it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(arg,)) for arg in args]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return errors


def test_a_study_written_from_two_machines_is_one_study(team_server) -> None:
    optuna = import_optuna()
    save_login(team_server.url, team_server.tokens["ana"])
    name = f"s-{uuid.uuid4().hex[:8]}"
    laptop = optuna.create_study(
        study_name=name, storage=server_storage(team_server.url, name),
        sampler=optuna.samplers.RandomSampler(seed=1),
    )  # fmt: skip
    other = optuna.load_study(study_name=name, storage=server_storage(team_server.url, name))
    errors = _at_once(lambda study: study.optimize(_objective, n_trials=6), [laptop, other])
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


def test_an_append_on_condition_of_the_journals_length_is_made_only_at_that_length(
    team_server,
) -> None:
    path = f"/api/v1/studies/cas-{uuid.uuid4().hex[:8]}/journal"
    entry = {"op_code": 99}
    with team_server.client("ana") as http:
        assert http.post(path, json={"entries": [entry], "batch": "a" * 16}).json() == {"count": 1}
        stale = http.post(path, json={"entries": [entry], "batch": "b" * 16, "expect": 0})
        current = http.post(path, json={"entries": [entry], "batch": "c" * 16, "expect": 1})
        # the answer to `current` was lost: its retry is not appended again, nor refused
        retried = http.post(path, json={"entries": [entry], "batch": "c" * 16, "expect": 1})
        entries = http.get(path).json()["entries"]

    assert stale.status_code == 409 and "holds 1 entries, not 0" in stale.json()["error"]
    assert current.json() == retried.json() == {"count": 2}
    assert len(entries) == 2


def test_two_machines_asking_in_turn_create_the_studys_trials_and_no_more(team_server) -> None:
    from mllib.tuning.drivers import has_room
    from mllib.tuning.records import StudyRecord
    from mllib.tuning.storage import ask_in_turn, open_study

    optuna = import_optuna()
    save_login(team_server.url, team_server.tokens["ana"])
    name = f"turns-{uuid.uuid4().hex[:8]}"
    record = StudyRecord(
        name=name, model="m", model_ref="model.py", metric="loss", direction="minimize",
        settings={"trials": 10, "parallel": 2, "sampler": "random", "pruner": "none",
                  "seed": None, "server": team_server.url},
        space={}, fixed={}, launch={}, status="created", user="ana",
    )  # fmt: skip
    studies = [open_study(None, record, create=True)]  # type: ignore[arg-type]
    studies.append(open_study(None, record, create=False))  # type: ignore[arg-type]
    x = optuna.distributions.FloatDistribution(-5, 5)
    asked: list[list[int]] = [[], []]

    def drive(i: int) -> None:
        while (trial := ask_in_turn(studies[i], {"x": x}, has_room(10))) is not None:
            asked[i].append(trial.number)
            studies[i].tell(trial, (trial.params["x"] - 2) ** 2)

    errors = _at_once(drive, [0, 1])
    assert not errors, errors
    seen = optuna.load_study(study_name=name, storage=server_storage(team_server.url, name))
    assert sorted(t.number for t in seen.get_trials()) == list(range(10))
    assert sorted(asked[0] + asked[1]) == list(range(10)) and asked[0] and asked[1]


def _server_record(server, name: str, sampler: str = "random"):
    from mllib.tuning.records import StudyRecord

    return StudyRecord(
        name=name, model="m", model_ref="model.py", metric="loss", direction="minimize",
        settings={"trials": 4, "parallel": 1, "sampler": sampler, "pruner": "none", "seed": 7,
                  "server": server.url},
        space={}, fixed={}, launch={}, status="created", user="ana",
    )  # fmt: skip


def _drive(study, presence, trials: int) -> list[float]:
    """What a driver does with its trials here: ask, tell (a trivial objective)."""
    from mllib.tuning.drivers import has_room
    from mllib.tuning.storage import ask_in_turn

    x = import_optuna().distributions.FloatDistribution(-5, 5)
    drawn = []
    for _ in range(trials):
        trial = ask_in_turn(study, {"x": x}, has_room(100))
        presence.claim(trial)
        drawn.append(trial.params["x"])
        study.tell(trial, (trial.params["x"] - 2) ** 2)
    return drawn


def test_drivers_are_numbered_in_the_order_they_join_and_the_same_drivers_draw_the_same_points(
    team_server,
) -> None:
    from mllib.tuning.drivers import Presence
    from mllib.tuning.storage import open_study, reseed

    save_login(team_server.url, team_server.tokens["ana"])

    def study_of_two_drivers(name: str) -> tuple[list[int], list[list[float]]]:
        """The machine that started it drives 2 trials, then another machine 2 more."""
        record = _server_record(team_server, name)
        numbers, drawn = [], []
        for create in (True, False):
            study = open_study(None, record, create=create)  # type: ignore[arg-type]
            with Presence(study) as presence:
                reseed(study, record, presence.number)  # what mllib tune does as it starts
                numbers.append(presence.number)
                drawn.append(_drive(study, presence, 2))
        return numbers, drawn

    first = study_of_two_drivers(f"seq-{uuid.uuid4().hex[:8]}")
    again = study_of_two_drivers(f"seq-{uuid.uuid4().hex[:8]}")

    assert first[0] == [0, 1]
    assert first[1] == again[1]  # the same drivers in the same order: the same points
    assert not set(first[1][0]) & set(first[1][1])  # the second did not draw the first's again


def test_a_driver_that_runs_out_of_trials_finishes_the_study_only_when_its_last_trial_ended(
    team_server,
) -> None:
    from mllib.tuning.drivers import Presence, ends_study, has_room
    from mllib.tuning.storage import ask_in_turn, open_study

    save_login(team_server.url, team_server.tokens["ana"])
    record = _server_record(team_server, f"end-{uuid.uuid4().hex[:8]}")
    mine = open_study(None, record, create=True)  # type: ignore[arg-type]
    theirs = open_study(None, record, create=False)  # type: ignore[arg-type]
    x = {"x": import_optuna().distributions.FloatDistribution(-5, 5)}
    me, other = Presence(mine), Presence(theirs)
    with other:
        with me:
            _drive(mine, me, 3)
            assert not ends_study(mine, 4, me)  # under budget, and another driver is at it
            last = ask_in_turn(theirs, x, has_room(4))  # the other machine's 4th trial
            other.claim(last)
            assert ask_in_turn(mine, x, has_room(4)) is None  # nothing left for this one
        # this driver has stopped; the other still drives, and its trial runs
        assert not ends_study(mine, 4, me)
        theirs.tell(last, 1.0)
        assert ends_study(mine, 4, me)  # the 4 trials ended: finished
    alone = open_study(
        None, _server_record(team_server, f"end-{uuid.uuid4().hex[:8]}"), create=True
    )  # type: ignore[arg-type]
    with Presence(alone) as only:
        _drive(alone, only, 1)
    assert ends_study(alone, 4, only)  # under budget, but no driver is left: finished

"""The registry's functions give the same answers on SQLite and on PostgreSQL: one set of queries,
translated where the two differ (mllib.registry.dialect). Each test runs on both databases."""

from __future__ import annotations

import math
import threading

import pytest

from mllib.agents.retry import attempts, begin_attempt, end_attempt, pin, pinned_agent
from mllib.datasets.catalog import add_version, latest_version, link_run, run_links
from mllib.errors import NotFoundError, UsageError
from mllib.registry import Registry
from mllib.registry.artifacts import add_artifact, list_artifacts, model_version_of, register_model
from mllib.registry.changes import changes_since, current_cursor
from mllib.registry.dialect import translate
from mllib.registry.environments import get_environment, set_environment
from mllib.registry.evaluations import latest_evaluations
from mllib.registry.metrics import (
    get_eval_metrics,
    insert_points,
    metric_names,
    metric_series,
    metric_summary,
    points_after,
    set_eval_metrics,
)
from mllib.registry.models import (
    alias_version,
    aliases,
    model_names,
    newest_version,
    remove_alias,
    set_alias,
    version_of_run,
)
from mllib.registry.runs import (
    RunRecord,
    count_runs,
    create_run,
    find_trained_run,
    finish_run,
    get_params,
    get_run,
    get_secret_params,
    list_runs,
    now,
    update_run,
)


def _run(reg: Registry, run_id: str, **values) -> RunRecord:
    record = RunRecord(
        id=run_id, model="clf", action="train", status="queued", created_at=now(), **values
    )
    create_run(reg, record, {"lr": 0.1, "layers": [1, 2], "token": "s3"}, {"lr": "cli"}, {"token"})
    return record


@pytest.fixture
def reg(database: str):
    registry = Registry.connect(database)
    yield registry
    registry.close()


def test_runs_are_created_found_by_prefix_listed_and_finished(reg: Registry) -> None:
    _run(reg, "abcd1111")
    _run(reg, "abcd2222", user="ana")
    _run(reg, "zzzz3333")
    assert get_run(reg, "zzzz").id == "zzzz3333"
    with pytest.raises(UsageError):
        get_run(reg, "abcd")  # two runs match
    with pytest.raises(NotFoundError):
        get_run(reg, "nope1234")
    assert [r.id for r in list_runs(reg)] == ["zzzz3333", "abcd2222", "abcd1111"]
    assert [r.id for r in list_runs(reg, user="ana")] == ["abcd2222"]
    assert count_runs(reg, status="queued") == 3
    assert get_params(reg, "abcd1111") == {"lr": 0.1, "layers": [1, 2], "token": "***"}
    assert get_secret_params(reg, "abcd1111") == {"token"}
    update_run(reg, "abcd1111", status="running", started_at=now())
    assert finish_run(reg, "abcd1111", "succeeded", None, None) is True
    assert finish_run(reg, "abcd1111", "failed", "user_error", "late") is False  # already ended
    assert get_run(reg, "abcd1111").status == "succeeded"


def test_a_finished_run_writes_its_own_record_into_its_folder(reg: Registry, tmp_path) -> None:
    """A run's record.json (what `mllib doctor --repair` rebuilds a registry from) is written
    on both databases: the team server's runs end on PostgreSQL."""
    from mllib.registry.runfolder import read_record

    _run(reg, "rec11111", run_dir=str(tmp_path))
    set_eval_metrics(reg, "rec11111", {"acc": 0.5})
    assert finish_run(reg, "rec11111", "succeeded", None, None) is True
    tables = read_record(tmp_path)
    assert tables is not None and tables["runs"][0]["status"] == "succeeded"
    assert {p["name"] for p in tables["params"]} == {"lr", "layers", "token"}
    assert [m["name"] for m in tables["eval_metrics"]] == ["acc"]


def test_the_record_written_when_a_run_is_recorded_is_the_whole_record(
    reg: Registry, tmp_path
) -> None:
    """The copy written as a run is recorded reads only its runs and params rows (the other
    tables hold nothing of a run that new): it is what a full read of the registry writes."""
    from mllib.registry.runfolder import read_record, save_record

    _run(reg, "new11111", run_dir=str(tmp_path))
    written = read_record(tmp_path)
    save_record(reg, "new11111")
    assert written is not None and written == read_record(tmp_path)
    assert {p["name"] for p in written["params"]} == {"lr", "layers", "token"}


def test_metrics_keep_nan_and_infinity_and_summarise_alike(reg: Registry) -> None:
    _run(reg, "m1")
    points = [(1, "loss", 0, 1.0, 0.0), (2, "loss", 1, math.nan, 0.0), (3, "loss", 2, 0.5, 0.0)]
    points += [(4, "acc", 0, math.inf, 0.0), (5, "odd", 0, math.nan, 0.0)]
    from mllib.metric_values import to_stored

    insert_points(reg, "m1", [(s, n, st, to_stored(v), ts) for s, n, st, v, ts in points])
    insert_points(reg, "m1", [(1, "loss", 0, 9.0, 0.0)])  # seq 1 again: ignored
    summary = metric_summary(reg, "m1")
    assert list(summary) == ["loss", "acc", "odd"]
    assert summary["loss"]["min"] == 0.5 and summary["loss"]["max"] == 1.0
    assert summary["loss"]["last"] == 0.5 and summary["loss"]["count"] == 3
    assert summary["acc"]["last"] == math.inf
    assert math.isnan(summary["odd"]["min"]) and math.isnan(summary["odd"]["last"])
    series = metric_series(reg, "m1", "loss")
    assert series[0] == (0, 1.0) and math.isnan(series[1][1])
    assert metric_names(reg, "m1") == ["loss", "acc", "odd"]  # in the order first logged
    later = points_after(reg, "m1", 1, name="loss")  # one metric's points alone
    assert [(seq, name, step) for seq, name, step, _ in later] == [(2, "loss", 1), (3, "loss", 2)]
    assert points_after(reg, "m1", 0, name="nothing") == []
    set_eval_metrics(reg, "m1", {"accuracy": 0.9})
    set_eval_metrics(reg, "m1", {"accuracy": 0.95})
    assert get_eval_metrics(reg, "m1") == {"accuracy": 0.95}


def test_artifacts_models_attempts_pins_and_datasets(reg: Registry) -> None:
    _run(reg, "a1")
    _run(reg, "a2")
    add_artifact(reg, "a1", "model", "model", "f" * 64, 10)
    add_artifact(reg, "a1", "model", "model", "e" * 64, 12)  # replaced
    assert list_artifacts(reg, "a1") == [
        {"path": "model", "kind": "model", "sha256": "e" * 64, "size": 12}
    ]
    assert register_model(reg, "clf", "a1", "e" * 64) == 1
    assert register_model(reg, "clf", "a2", "d" * 64) == 2
    assert model_version_of(reg, "a2")["version"] == 2
    assert find_trained_run(reg, "clf", None) is None  # none succeeded yet
    begin_attempt(reg, "a1", 1, "gpu1", 0)
    assert end_attempt(reg, "a1", 1, "failed", "system_error", "lost") is True
    assert end_attempt(reg, "a1", 1, "failed", "system_error", "lost") is False
    begin_attempt(reg, "a1", 2, "gpu2", 10)
    assert [(a["attempt"], a["agent"], a["status"]) for a in attempts(reg, "a1")] == [
        (1, "gpu1", "failed"),
        (2, "gpu2", "running"),
    ]
    pin(reg, "a2", "gpu1")
    pin(reg, "a2", "gpu2")
    assert pinned_agent(reg, "a2") == "gpu2"
    row = {"name": "images", "sha256": "c" * 64, "kind": "folder", "size": 5, "file_count": 1}
    row |= {"user": "ana"}
    version, new = add_version(reg, {**row, "chunk_count": 1, "entry": None, "source": "x"})
    assert new and version.version == 1
    assert add_version(reg, {**row, "chunk_count": 1, "entry": None, "source": "x"})[1] is False
    assert latest_version(reg, "images").version == 1
    link_run(reg, "a1", [("TRAIN_DATA", "images", 1, "c" * 64)])
    link_run(reg, "a1", [("TRAIN_DATA", "images", 1, "c" * 64)])  # again: replaced
    assert run_links(reg, "a1") == [
        {"env": "TRAIN_DATA", "name": "images", "version": 1, "sha256": "c" * 64}
    ]


def test_model_versions_aliases_evaluations_and_environments(reg: Registry) -> None:
    _run(reg, "v1")
    _run(reg, "v2")
    register_model(reg, "clf", "v1", "a" * 64)
    register_model(reg, "clf", "v2", "b" * 64)
    assert model_names(reg) == ["clf"] and newest_version(reg, "clf").version == 2
    assert version_of_run(reg, "v1").ref == "clf:1"
    assert set_alias(reg, "clf", "champion", 1, "ana") is None
    assert set_alias(reg, "clf", "champion", 2, "bo") == 1  # moved
    assert alias_version(reg, "clf", "champion") == 2 and aliases(reg) == {"clf": {"champion": 2}}
    assert remove_alias(reg, "clf", "champion") == 2 and aliases(reg, "clf") == {}
    # v1 evaluated twice by later evaluate runs: the latest speaks for it
    for run_id, ended, accuracy in [
        ("e1", "2026-01-01T00:00:01", 0.8),
        ("e2", "2026-01-01T00:00:02", 0.9),
    ]:
        _run(reg, run_id, source_run_id="v1")
        update_run(reg, run_id, action="evaluate", status="succeeded", ended_at=ended)
        set_eval_metrics(reg, run_id, {"accuracy": accuracy})
    latest = latest_evaluations(reg, ["v1", "v2"])
    assert list(latest) == ["v1"] and latest["v1"].run_id == "e2" and latest["v1"].count == 2
    assert latest["v1"].metrics == {"accuracy": 0.9}
    set_environment(reg, "v1", {"python": "3.11", "packages_hash": "p1"})
    set_environment(reg, "v1", {"python": "3.12", "packages_hash": "p2"})  # a retry: replaced
    assert get_environment(reg, "v1") == {"python": "3.12", "packages_hash": "p2"}
    assert get_environment(reg, "v2") is None
    # `runs rm` of the newest version: its number is not given to the next one
    with reg.transaction():
        reg.conn.execute("DELETE FROM models WHERE run_id = ?", ("v2",))
    _run(reg, "v3")
    assert register_model(reg, "clf", "v3", "c" * 64) == 3
    assert newest_version(reg, "clf").version == 3
    # a run recorded again (its rows lost, then synced anew from its agent) gets its own back
    with reg.transaction():
        reg.conn.execute("DELETE FROM models WHERE run_id = ?", ("v1",))
    assert register_model(reg, "clf", "v1", "a" * 64) == 1


def test_the_change_feed_names_changed_runs(reg: Registry) -> None:
    _run(reg, "c1")
    cursor = current_cursor(reg)
    _run(reg, "c2")
    update_run(reg, "c1", phase="training")
    insert_points(reg, "c2", [(1, "loss", 0, 1.0, 0.0)])
    changes = changes_since(reg, cursor)
    assert changes.records == {"c1", "c2"} and changes.metrics == {"c2"}
    assert changes_since(reg, changes.cursor).runs == set()


def test_a_change_committed_after_a_later_one_is_not_skipped(pg_cluster) -> None:
    """PostgreSQL: writers run at once, so a run changed first (a lower change number, an
    earlier point row) may commit after one changed later. A live view that read in between
    still gets it on its next read (SQLite's writers commit one at a time: nothing to test)."""
    url = pg_cluster.new_database()
    first, second, reader = (Registry.connect(url) for _ in range(3))
    try:
        _run(reader, "e1")
        cursor = current_cursor(reader)
        with first.transaction():
            update_run(first, "e1", phase="training")  # numbered first, committed last
            insert_points(first, "e1", [(1, "loss", 0, 1.0, 0.0)])
            _run(second, "l2")
            insert_points(second, "l2", [(1, "loss", 0, 1.0, 0.0)])
            seen = changes_since(reader, cursor)
            assert seen.records == {"l2"} and seen.metrics == {"l2"}
        after = changes_since(reader, seen.cursor)
        assert "e1" in after.records and "e1" in after.metrics
        assert changes_since(reader, changes_since(reader, after.cursor).cursor).runs == set()
    finally:
        for registry in (first, second, reader):
            registry.close()


def test_a_failed_transaction_leaves_nothing_and_transactions_nest(reg: Registry) -> None:
    with pytest.raises(RuntimeError), reg.transaction():
        _run(reg, "t1")
        with reg.transaction():  # joins the outer one
            update_run(reg, "t1", phase="x")
        raise RuntimeError("crash in the middle")
    assert list_runs(reg) == []
    _run(reg, "t2")
    assert [r.id for r in list_runs(reg)] == ["t2"]


def test_reopening_applies_nothing_twice_and_concurrent_opens_agree(database: str) -> None:
    errors: list[BaseException] = []

    def open_once() -> None:
        try:
            Registry.connect(database).close()
        except BaseException as exc:  # pragma: no cover - shown by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=open_once) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    reg = Registry.connect(database)
    applied = reg.query("SELECT migration_set, name FROM _sqlite_migrations")
    reg.close()
    assert len(applied) == len({(r["migration_set"], r["name"]) for r in applied}) > 0


def test_translation_leaves_quoted_text_alone() -> None:
    assert (
        translate("SELECT '?' AS q, x FROM t WHERE y = ?")
        == "SELECT '?' AS q, x FROM t WHERE y = %s"
    )
    assert translate("BEGIN IMMEDIATE") == "BEGIN"

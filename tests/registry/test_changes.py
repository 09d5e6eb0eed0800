"""The registry's change feed: which runs changed since a cursor (what the dashboard re-reads)."""

from mllib.registry import Registry
from mllib.registry.artifacts import add_artifact
from mllib.registry.changes import Cursor, changes_since, current_cursor
from mllib.registry.metrics import insert_points, set_eval_metrics
from mllib.registry.runs import RunRecord, create_run, finish_run, now, set_params, update_run


def _run(reg: Registry, run_id: str) -> None:
    create_run(reg, RunRecord(run_id, "m", "train", "running", now()), {"lr": 0.1}, {})


def test_each_kind_of_change_names_its_run_once_and_the_cursor_moves_past_it(tmp_path):
    reg = Registry.open(tmp_path / "registry.db")
    for run_id in ("aaaa1", "bbbb2", "cccc3", "dddd4", "eeee5"):
        _run(reg, run_id)
    start = current_cursor(reg)
    assert changes_since(reg, start).runs == set()

    update_run(reg, "aaaa1", phase="train")
    set_params(reg, "bbbb2", {"lr": 0.2}, {})
    set_eval_metrics(reg, "cccc3", {"acc": 0.9})
    add_artifact(reg, "dddd4", "a.txt", "file", "0" * 64, 1)
    insert_points(reg, "eeee5", [(1, "loss", 0, 1.0, 0.0), (2, "loss", 1, 0.5, 0.0)])
    changes = changes_since(reg, start)
    assert changes.records == {"aaaa1", "bbbb2", "cccc3", "dddd4"}
    assert changes.metrics == {"eeee5"}

    # Asked again from the returned cursor: nothing, until the next change.
    assert changes_since(reg, changes.cursor).runs == set()
    finish_run(reg, "aaaa1", "succeeded", None, None)
    insert_points(reg, "eeee5", [(3, "loss", 2, 0.25, 0.0)])
    later = changes_since(reg, changes.cursor)
    assert (later.records, later.metrics) == ({"aaaa1"}, {"eeee5"})
    assert later.cursor.change > changes.cursor.change
    assert later.cursor.metric_row > changes.cursor.metric_row


def test_a_new_run_and_points_already_stored_again(tmp_path):
    reg = Registry.open(tmp_path / "registry.db")
    _run(reg, "aaaa1")
    insert_points(reg, "aaaa1", [(1, "loss", 0, 1.0, 0.0)])
    cursor = current_cursor(reg)
    insert_points(reg, "aaaa1", [(1, "loss", 0, 1.0, 0.0)])  # a re-read event: ignored
    _run(reg, "ffff6")
    changes = changes_since(reg, cursor)
    assert (changes.records, changes.metrics) == ({"ffff6"}, set())
    assert changes_since(reg, Cursor()).runs == {"aaaa1", "ffff6"}  # from the start: everything


def test_a_registry_opened_by_another_process_sees_the_feed(tmp_path):
    writer = Registry.open(tmp_path / "registry.db")
    reader = Registry.open(tmp_path / "registry.db")
    cursor = current_cursor(reader)
    _run(writer, "aaaa1")
    assert changes_since(reader, cursor).records == {"aaaa1"}

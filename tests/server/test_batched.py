"""A group commit's batch recorded together (mllib.server.batched), on SQLite and PostgreSQL:
in one transaction, plain submissions, one over its quota, a retry, one that fails a check;
each gets the outcome the one-by-one path gives, and the places counted without a query are
the ones the queue's query counts."""

from __future__ import annotations

import pytest

from mllib.errors import UsageError
from mllib.plugins import SERVER_MIGRATIONS
from mllib.queue.jobs import QuotaExceeded, get_job
from mllib.queue.views import _ahead
from mllib.registry import Registry
from mllib.server.accounts import User
from mllib.server.api import SubmissionBody
from mllib.server.app import submission_of
from mllib.server.batched import record_batch
from mllib.server.submit import Accepted
from mllib.store import LocalBlobStore
from mllib.store.trees import put_tree
from tests.server.conftest import submission_body


@pytest.fixture
def reg(database: str):
    registry = Registry.connect(database, SERVER_MIGRATIONS)
    yield registry
    registry.close()


def test_a_batch_answers_each_submission_as_one_by_one_would(reg, tmp_path) -> None:
    store = LocalBlobStore(tmp_path / "store")
    code = tmp_path / "code"
    code.mkdir()
    (code / "model.py").write_text("class M:\n    pass\n")
    tree = put_tree(store, code).sha256

    def sub(code_tree: str = tree, **fields):
        return submission_of(SubmissionBody(**submission_body(code_tree, **fields)))

    ana, bo = User("ana"), User("bo")
    first = sub(priority=1)
    (earlier,) = record_batch(reg, store, tmp_path / "runs", [(ana, first, 10)])
    assert isinstance(earlier, Accepted) and earlier.ahead == 0
    items = [
        (ana, sub(), 3),  # ana has 1 queued: fits
        (bo, sub(priority=2), 10),
        (ana, sub(priority=1), 3),  # fits (3 queued with the one above)
        (ana, sub(), 3),  # over ana's quota of 3
        (bo, sub("0" * 64), 10),  # fails a check: no such code
        (bo, sub(), 10),
    ]
    with reg.transaction():
        outcomes = record_batch(reg, store, tmp_path / "runs", items)
    kinds = [Accepted, Accepted, Accepted, QuotaExceeded, UsageError, Accepted]
    assert [type(o) for o in outcomes] == kinds
    assert "limit is 3" in outcomes[3].message and "code" in outcomes[4].message
    new = [o for o in outcomes if isinstance(o, Accepted)]
    assert all(o.created for o in new)
    for accepted in new:  # the place counted in the batch is the query's
        assert accepted.ahead == _ahead(reg, get_job(reg, accepted.run.id)), accepted.run.id
    assert [o.ahead for o in (outcomes[0], outcomes[2], outcomes[1], outcomes[5])] == [2, 1, 0, 1]
    # a retry in a batch: its rows refused together, each goes one by one
    later = sub()
    with reg.transaction():
        retry, fresh = record_batch(
            reg, store, tmp_path / "runs", [(ana, first, 10), (bo, later, 10)]
        )
    assert not retry.created and retry.run.id == first.run_id and retry.job.run_id == first.run_id
    assert fresh.created and fresh.run.id == later.run_id
    rows = reg.query("SELECT run_id FROM jobs ORDER BY run_id")
    ids = sorted([first.run_id, later.run_id, *(a.run.id for a in new)])
    assert [r["run_id"] for r in rows] == ids  # once each; nothing of the refused ones
    params = reg.query("SELECT run_id, name, value, source FROM params ORDER BY run_id")
    assert [(p["run_id"], p["name"], p["value"]) for p in params] == [(i, "lr", "0.5") for i in ids]

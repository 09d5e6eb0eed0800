"""The queue on SQLite and on PostgreSQL: durable, idempotent submissions; fair share, priority
and age; GPU-aware placement; quotas; leases that run out and requeue; no job claimed twice."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter

import psycopg
import pytest

from mllib.plugins import SERVER_MIGRATIONS
from mllib.queue import jobs as q
from mllib.queue.scheduler import pick
from mllib.queue.views import position, queue
from mllib.registry import Registry
from mllib.registry.runs import RunRecord, create_run, now


@pytest.fixture
def reg(database: str):
    registry = Registry.connect(database, SERVER_MIGRATIONS)
    yield registry
    registry.close()


def submit(reg: Registry, run_id: str, user: str, max_queued: int | None = None, **job) -> q.Job:
    with reg.transaction():
        create_run(reg, RunRecord(run_id, "m", "train", "queued", now()), {}, {})
        return q.enqueue(reg, q.Job(run_id, user, **job), max_queued=max_queued)


def test_fair_share_goes_to_the_user_holding_fewest_slots_then_priority_then_age(reg) -> None:
    for i in range(3):
        submit(reg, f"ana{i}", "ana", enqueued_at=100.0 + i)
    submit(reg, "bo0", "bo", enqueued_at=200.0)
    submit(reg, "bo1", "bo", enqueued_at=201.0, priority=5)
    submit(reg, "cy0", "cy", enqueued_at=50.0)
    free = {"gpu1": 8}
    got = [pick(reg, free).job.run_id for _ in range(5)]
    # Round 1: cy's job is oldest among the heads (nobody holds a slot), bo's urgent job beats
    # ana's by priority; then ana holds none... each user gets one before anyone gets two.
    assert got[:3] == ["bo1", "cy0", "ana0"]
    assert Counter(r[:2] for r in got[:3]) == Counter({"bo": 1, "cy": 1, "an": 1})
    assert got[3:] == ["ana1", "bo0"] or got[3:] == ["bo0", "ana1"]


def test_placement_needs_enough_free_gpus_and_fits_tightly(reg) -> None:
    submit(reg, "big", "ana", gpus=4, enqueued_at=1.0)
    submit(reg, "one", "bo", gpus=1, enqueued_at=2.0)
    placed = pick(reg, {"a": 2, "b": 1})  # nothing has 4 free: bo's small job goes to b
    assert (placed.job.run_id, placed.agent) == ("one", "b")
    assert pick(reg, {"a": 2, "b": 0}) is None  # the big one waits
    placed = pick(reg, {"a": 4, "b": 8})
    assert (placed.job.run_id, placed.agent) == ("big", "a")


def test_a_retried_submission_finds_its_job_and_quotas_refuse_with_retry_after(reg) -> None:
    submit(reg, "r1", "ana", idem_key="k-1")
    assert q.find_by_key(reg, "ana", "k-1").run_id == "r1"
    assert q.find_by_key(reg, "bo", "k-1") is None  # keys are per user
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):  # never a second job
        submit(reg, "r2", "ana", idem_key="k-1")
    assert reg.query("SELECT COUNT(*) AS n FROM runs WHERE id = 'r2'")[0]["n"] == 0
    submit(reg, "r3", "ana", max_queued=2)
    with pytest.raises(q.QuotaExceeded) as refused:
        submit(reg, "r4", "ana", max_queued=2)
    assert refused.value.retry_after_s > 0 and "limit is 2" in refused.value.message
    assert (
        reg.query("SELECT COUNT(*) AS n FROM runs WHERE id = 'r4'")[0]["n"] == 0
    )  # nothing half-written
    assert pick(reg, {"a": 1}, max_running={"ana": 0}) is None  # at its running quota


def test_a_lease_that_runs_out_requeues_the_job_in_its_place(reg) -> None:
    submit(reg, "l1", "ana", enqueued_at=1.0)
    submit(reg, "l2", "ana", enqueued_at=2.0)
    placed = pick(reg, {"a": 1}, lease_s=0.05)
    assert placed.job.run_id == "l1"
    q.renew(reg, ["l1"], 0.05)
    time.sleep(0.1)
    (lost,) = q.expired(reg)
    assert lost.run_id == "l1" and lost.agent == "a"
    q.requeue(reg, "l1", attempt=2, not_before=0.0)
    again = pick(reg, {"b": 1})
    assert (again.job.run_id, again.agent, again.job.attempt) == ("l1", "b", 2)
    assert q.done(reg, "l1") and not q.done(reg, "l1")


def test_positions_follow_the_fair_share_order(reg) -> None:
    for i in range(3):
        submit(reg, f"a{i}", "ana", enqueued_at=float(i) + 1)
        submit(reg, f"b{i}", "bo", enqueued_at=float(i) + 1.5)
    places = {r["run_id"]: r["position"] for r in queue(reg)["queued"]}
    assert sorted(places.values()) == [1, 2, 3, 4, 5, 6]
    assert places["a2"] in (5, 6) and places["a0"] in (1, 2)
    assert position(reg, q.get_job(reg, "b1"))[0] == places["b1"]
    assert queue(reg, user="bo")["users"] == {"bo": {"queued": 3, "running": 0, "gpus_running": 0}}


def test_competing_claimers_never_take_one_job_twice(database: str) -> None:
    setup = Registry.connect(database, SERVER_MIGRATIONS)
    for i in range(60):
        submit(setup, f"j{i:03d}", f"u{i % 4}")
    setup.close()
    taken: list[str] = []
    errors: list[BaseException] = []

    def claimer() -> None:
        reg = Registry.connect(database)
        try:
            while (placed := pick(reg, {"a": 1 << 20})) is not None:
                taken.append(placed.job.run_id)
        except BaseException as exc:  # pragma: no cover - shown by the assert
            errors.append(exc)
        finally:
            reg.close()

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(taken) == [f"j{i:03d}" for i in range(60)]


def test_the_waiting_counts_follow_every_change_of_a_job(reg) -> None:
    # The scheduler's waiting users, quotas and places read the per-user counts that triggers
    # keep: whatever moves a job (enqueue, claim, requeue, cancel, a row written by hand), they
    # equal a count of the queue itself.
    def counts() -> dict[tuple[str, int], int]:
        rows = reg.query('SELECT "user", priority, queued FROM queue_waiting WHERE queued > 0')
        return {(r["user"], int(r["priority"])): int(r["queued"]) for r in rows}

    def counted() -> dict[tuple[str, int], int]:
        rows = reg.query(
            'SELECT "user", priority, COUNT(*) AS n FROM jobs WHERE state = ? '
            'GROUP BY "user", priority',
            (q.QUEUED,),
        )
        return {(r["user"], int(r["priority"])): int(r["n"]) for r in rows}

    for i in range(4):
        submit(reg, f"w{i}", "ana", enqueued_at=float(i) + 1, priority=i % 2)
    submit(reg, "wb", "bo", enqueued_at=9.0)
    assert counts() == counted() == {("ana", 0): 2, ("ana", 1): 2, ("bo", 0): 1}
    assert q.queued_count(reg, "ana") == 4
    placed = pick(reg, {"a": 1})
    assert placed.job.run_id == "w1"  # the more urgent head
    assert counts() == counted() and q.queued_count(reg, "ana") == 3
    q.requeue(reg, placed.job.run_id, attempt=2, not_before=0.0)
    assert counts() == counted()
    q.done(reg, "w1")  # cancelled while queued
    with reg.transaction():
        reg.conn.execute("UPDATE jobs SET priority = 7 WHERE run_id = 'w2'")
        reg.conn.execute("DELETE FROM jobs WHERE run_id = 'wb'")
    assert counts() == counted() == {("ana", 0): 1, ("ana", 1): 1, ("ana", 7): 1}
    assert q.queued_count(reg, "bo") == 0
    # the newest job's place comes from the counts; an older one's from a count: the same order
    submit(reg, "w9", "ana", enqueued_at=20.0, priority=1)
    places = {r["run_id"]: r["position"] for r in queue(reg)["queued"]}
    assert position(reg, q.get_job(reg, "w9"))[0] == places["w9"] == 3
    assert position(reg, q.get_job(reg, "w3"))[0] == places["w3"] == 2

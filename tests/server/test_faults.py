"""Faults during a burst of submissions (4 clients, each retrying with its idempotency key as the
CLI does): kill -9 of the server, kill -9 of PostgreSQL. Every acknowledged submission is there
exactly once afterwards, and nothing is half-written."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from mllib.registry import Registry
from tests.server.conftest import make_server, submission_body, upload_code_tree

CLIENTS = 4


class Burst:
    """CLIENTS threads submitting until stopped; each submission retried (same key) until
    acknowledged or the burst ends, as `mllib train --remote` retries."""

    def __init__(self, server, code_tree: str) -> None:
        self.server, self.code_tree = server, code_tree
        self.acked: list[str] = []
        self.tried: list[str] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]

    def __enter__(self) -> Burst:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=120)

    def _client(self) -> None:
        while not self.stopping.is_set():
            body = submission_body(self.code_tree)
            run_id = body["run_id"]
            with self.lock:
                self.tried.append(run_id)
            while True:
                try:
                    with self.server.client("ana") as http:
                        answer = http.post("/api/v1/runs", json=body, timeout=10)
                except httpx.TransportError:
                    if self.stopping.is_set():
                        break
                    time.sleep(0.05)
                    continue
                if answer.status_code in (200, 201):
                    with self.lock:
                        self.acked.append(run_id)
                    break
                if answer.status_code != 503:
                    with self.lock:
                        self.errors.append(f"{answer.status_code} {answer.text}")
                    break
                time.sleep(0.05)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.acked) >= count, (len(self.acked), self.errors, self.server.log())


def _check_exactly_once(location: str, burst: Burst) -> None:
    reg = Registry.connect(location)
    try:
        runs = {r["id"] for r in reg.query("SELECT id FROM runs")}
        jobs = reg.query("SELECT run_id, idem_key FROM jobs")
        params = reg.query("SELECT run_id, COUNT(*) AS n FROM params GROUP BY run_id")
    finally:
        reg.close()
    assert set(burst.acked) <= runs  # every acknowledged submission is there
    assert runs <= set(burst.tried)  # and nothing else
    assert len(jobs) == len(runs) == len({j["idem_key"] for j in jobs})  # once each, whole
    assert {j["run_id"] for j in jobs} == runs
    assert all(p["n"] == 1 for p in params) and len(params) == len(runs)
    assert burst.errors == []


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_kill_9_of_the_server_during_a_burst_loses_no_acknowledged_submission(
    database, tmp_path, request
):
    location = "sqlite"
    if database == "postgresql":
        location = request.getfixturevalue("pg_cluster").new_database()
    server = make_server(tmp_path, location)
    server.add_user("ana")
    server.start()
    try:
        code = upload_code_tree(server)
        with Burst(server, code) as burst:
            burst.wait_for(40)
            server.kill()
            killed_at = len(burst.acked)
            time.sleep(0.5)
            server.start()
            burst.wait_for(killed_at + 40)
        _check_exactly_once(
            location if database == "postgresql" else str(server.home / "registry.db"), burst
        )
    finally:
        server.stop()


def test_kill_9_of_postgresql_during_a_burst_loses_no_acknowledged_submission(pg_cluster, tmp_path):
    location = pg_cluster.new_database()
    server = make_server(tmp_path, location)
    server.add_user("ana")
    server.start()
    try:
        code = upload_code_tree(server)
        with Burst(server, code) as burst:
            burst.wait_for(40)
            pg_cluster.crash()  # as kill -9 of the postmaster leaves it: recovery at start
            crashed_at = len(burst.acked)
            time.sleep(1.0)
            pg_cluster.start()
            burst.wait_for(crashed_at + 40, timeout=120)  # the server reconnects by itself
        _check_exactly_once(location, burst)
        with server.client("ana") as http:
            assert http.get("/health").status_code == 200
    finally:
        server.stop()

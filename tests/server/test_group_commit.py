"""Submissions arriving together share one commit (mllib.server.commits), and the server's
token cache (mllib.server.tokencache): on a real server, over real HTTP, on both databases.

Each client below waits at a barrier and then posts, so the submissions reach the server's
writer together and are recorded in the same few transactions."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from mllib.registry import Registry
from mllib.server.main import home_at
from tests.conftest import run_cli
from tests.server.conftest import submission_body, upload_code_tree

CLIENTS = 24


@pytest.fixture(scope="module")
def server(team_server):
    """The module's server (users ana, bo, and cy: at most 2 runs queued) with a code tree."""
    team_server.code_tree = upload_code_tree(team_server)
    return team_server


def together(server, posts: list[tuple[str, dict]]) -> list[httpx.Response]:
    """Each (user, body) posted to /api/v1/runs by its own client, all at once."""
    answers: list[httpx.Response | None] = [None] * len(posts)
    start = threading.Barrier(len(posts))

    def post(i: int, user: str, body: dict) -> None:
        with server.client(user) as http:
            http.get("/api/v1/whoami").raise_for_status()  # connected, token checked
            start.wait()
            answers[i] = http.post("/api/v1/runs", json=body)

    threads = [threading.Thread(target=post, args=(i, *p)) for i, p in enumerate(posts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(a is not None for a in answers)
    return answers  # type: ignore[return-value]


def recorded(server, run_ids: list[str]) -> dict[str, int]:
    """How many times each of `run_ids` is recorded as a run and as a job."""
    home = home_at(server.home)
    reg = Registry.connect(home.database_url(home.read()))
    try:
        marks = ", ".join("?" for _ in run_ids)
        runs = reg.query(f"SELECT id FROM runs WHERE id IN ({marks})", run_ids)
        jobs = reg.query(f"SELECT run_id FROM jobs WHERE run_id IN ({marks})", run_ids)
    finally:
        reg.close()
    counts = dict.fromkeys(run_ids, 0)
    for row in [*({"id": r["id"]} for r in runs), *({"id": j["run_id"]} for j in jobs)]:
        counts[row["id"]] += 1
    return counts


def test_concurrent_submissions_are_each_acknowledged_and_recorded_once(server):
    bodies = [submission_body(server.code_tree) for _ in range(CLIENTS)]
    posts = [("ana" if i % 2 else "bo", body) for i, body in enumerate(bodies)]
    first = together(server, posts)
    assert [a.status_code for a in first] == [201] * CLIENTS, [a.text for a in first]
    assert [a.json()["id"] for a in first] == [b["run_id"] for b in bodies]
    assert all(a.json()["created"] and a.json()["position"] >= 1 for a in first)
    # every one retried at once (a client that timed out): the same runs, none made twice
    again = together(server, posts)
    assert [a.status_code for a in again] == [200] * CLIENTS, [a.text for a in again]
    assert [a.json()["id"] for a in again] == [b["run_id"] for b in bodies]
    assert not any(a.json()["created"] for a in again)
    counts = recorded(server, [b["run_id"] for b in bodies])
    assert set(counts.values()) == {2}, counts  # a run and a job each, once


def test_a_refused_submission_fails_alone_in_its_batch(server):
    good = [submission_body(server.code_tree) for _ in range(CLIENTS - 6)]
    over_quota = [submission_body(server.code_tree) for _ in range(4)]  # cy may queue 2
    with server.client("bo") as http:
        earlier = http.post("/api/v1/runs", json=submission_body(server.code_tree)).json()["id"]
    taken = submission_body(server.code_tree, run_id=earlier)  # another key, a run id taken
    malformed = submission_body(server.code_tree, gpus=65)
    posts = [
        *(("bo", b) for b in good),
        *(("cy", b) for b in over_quota),
        ("bo", taken),
        ("ana", malformed),
    ]
    answers = together(server, posts)
    codes = [a.status_code for a in answers]
    assert codes[: len(good)] == [201] * len(good), [a.text for a in answers]
    assert sorted(codes[len(good) : len(good) + 4]) == [201, 201, 429, 429]
    quota = next(a for a in answers if a.status_code == 429)
    assert quota.headers["Retry-After"] and "limit is 2" in quota.json()["error"]
    assert codes[-2:] == [409, 422], [a.text for a in answers[-2:]]
    assert "taken" in answers[-2].json()["error"]
    counts = recorded(server, [b["run_id"] for b in [*good, *over_quota, malformed]])
    accepted = [b["run_id"] for b, c in zip([*good, *over_quota], codes, strict=False) if c == 201]
    assert {r for r, n in counts.items() if n} == set(accepted)
    assert all(counts[r] == 2 for r in accepted)


def test_a_disabled_user_is_refused_within_a_second_and_a_logout_at_once(server):
    token = run_cli(
        ["server", "users", "token", "ana", "--dir", str(server.home)], cwd=server.home
    ).stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        body = submission_body(server.code_tree)
        assert http.post("/api/v1/runs", json=body).status_code == 201  # its token cached now
        assert http.post("/api/v1/logout").status_code == 204
        refused = http.post("/api/v1/runs", json=submission_body(server.code_tree))
        assert refused.status_code == 401 and "revoked" in refused.json()["error"]
        assert token not in refused.text

    with server.client("bo") as http:
        assert http.post("/api/v1/runs", json=submission_body(server.code_tree)).is_success
        assert http.get("/api/v1/whoami").status_code == 200
        result = run_cli(["server", "users", "disable", "bo", "--dir", str(server.home)],
                         cwd=server.home)  # fmt: skip
        assert result.returncode == 0, result.output
        disabled_at = time.monotonic()
        while True:  # the server's cached check lapses within its second
            answer = http.post("/api/v1/runs", json=submission_body(server.code_tree))
            if answer.status_code == 401 or time.monotonic() - disabled_at > 5:
                break
            time.sleep(0.05)
        assert answer.status_code == 401 and "disabled" in answer.json()["error"]
        assert time.monotonic() - disabled_at < 1.0 + 1.5  # its TTL, and this loaded machine
        assert http.get("/api/v1/whoami").status_code == 401
        run_cli(["server", "users", "disable", "bo", "--enable", "--dir", str(server.home)],
                cwd=server.home)  # fmt: skip

"""Micro-batching inline: a real `mllib serve` of a model with predict_batch, on loopback, driven
by real HTTP clients (http.client, so a test knows each request has been sent before it lets the
model go on). No timing: a request that holds its batch until the test opens a gate makes the
others queue up, which is what concurrency does under load."""

from __future__ import annotations

import http.client
import json
import threading

import httpx
import pytest

from mllib.encoding import to_json_bytes
from tests.conftest import ROOT, Project, wait_for
from tests.serving.conftest import DevServer, train
from tests.serving.test_serve import samples, total

CONFIG = """
name = "batched"
model = "model.py:Batched"

[serve]
workers = 1
drain_s = 1.0
timeout_s = 20.0
max_batch = 8
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """`mllib serve` (inline, one process, max_batch 8) of tests/models/batched.py."""
    root = tmp_path_factory.mktemp("batched") / "proj"
    root.mkdir()
    project = Project(root)
    project.write("model.py", (ROOT / "tests" / "models" / "batched.py").read_text())
    project.write("mllib.toml", CONFIG)
    train(project)
    dev = DevServer(project, "model.py")
    dev.gates = root / "gates"
    dev.gates.mkdir()
    wait_for(
        lambda: _health(dev.url) == 200, timeout=90, what=f"the server to be ready:\n{dev.output()}"
    )
    yield dev
    dev.stop()


def _health(url: str) -> int | None:
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code
    except httpx.TransportError:
        return None


def burst(server, bodies: list[bytes], held_body=None) -> list[tuple[int, dict]]:
    """Send one request that holds the predict thread (`held_body(gate)`: the request that waits
    until the file `gate` exists), then every body, each on its own connection; let the held one
    go once all are sent and the server has answered a request sent after them; return each
    body's (status, JSON answer), in order, after the held one's."""
    gate = server.gates / f"gate-{threading.get_ident()}-{len(list(server.gates.iterdir()))}"
    port = int(server.url.rsplit(":", 1)[1])
    held_body = held_body or (lambda gate: {"x": 0, "id": "held", "hold": gate})
    held = json.dumps(held_body(str(gate))).encode()
    conns = []
    for body in [held, *bodies]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
        conns.append(conn)
    assert _health(server.url) == 200  # the event loop has read what was sent before this
    gate.touch()
    replies = []
    for conn in conns:
        response = conn.getresponse()
        replies.append((response.status, json.loads(response.read())))
        conn.close()
    assert replies[0][0] == 200, replies[0]
    return replies


def good(i: int) -> bytes:
    return json.dumps({"x": i, "id": f"r{i}"}).encode()


def test_concurrent_requests_are_answered_in_batches_each_with_its_own_answer(server):
    before = samples(httpx.get(f"{server.url}/metrics").text)
    replies = burst(server, [good(i) for i in range(20)])[1:]
    for i, (status, body) in enumerate(replies):
        assert status == 200, body
        assert (body["id"], body["y"], body["by"]) == (f"r{i}", 2.0 * i, "predict_batch")
        assert 1 <= body["batch_size"] <= 8  # [serve] max_batch
    assert max(body["batch_size"] for _, body in replies) > 1
    after = samples(httpx.get(f"{server.url}/metrics").text)
    calls = total(after, "mllib_predict_batch_size_count") - total(
        before, "mllib_predict_batch_size_count"
    )
    requests = total(after, "mllib_predict_batch_size_sum") - total(
        before, "mllib_predict_batch_size_sum"
    )
    assert requests == 21  # the held one too
    assert calls < requests  # fewer predict_batch() calls than requests
    assert (
        total(after, "mllib_predict_duration_seconds_count")
        - total(before, "mllib_predict_duration_seconds_count")
        == 21
    )  # one observation per request, batched or not


def test_a_lone_request_is_answered_at_once_as_a_batch_of_one(server):
    response = httpx.post(f"{server.url}/predict", json={"x": 3, "id": "lone"}, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["y"], body["by"], body["batch_size"]) == (6.0, "predict_batch", 1)


def test_a_body_that_is_not_json_gets_its_400_and_its_batch_the_rest(server):
    bodies = [good(i) for i in range(10)]
    bodies[4] = b"{not json"
    replies = burst(server, bodies)[1:]
    status, body = replies[4]
    assert status == 400
    assert body["error"].startswith("The request body is not valid JSON")
    others = [body for i, (status, body) in enumerate(replies) if i != 4 and status == 200]
    assert [b["id"] for b in others] == [f"r{i}" for i in range(10) if i != 4]
    assert all(b["by"] == "predict_batch" for b in others)
    assert max(b["batch_size"] for b in others) > 1


@pytest.mark.parametrize(
    ("bad", "logged"),
    [
        ({"fail": True}, "predict_batch() failed for {n} requests (RuntimeError: this batch"),
        ({"short": True}, "failed for {n} requests (ValueError: predict_batch() returned {m} "),
    ],
    ids=["raises", "wrong-length"],
)
def test_a_failing_batch_is_answered_one_request_at_a_time(server, bad, logged):
    bodies = [good(i) for i in range(12)]
    bodies[5] = json.dumps({"x": 5, "id": "r5", **bad}).encode()
    held, *replies = burst(server, bodies)
    if bad.get("fail"):  # its own 500, with an error id; its batch-mates get their 200s
        status, body = replies[5]
        assert status == 500
        assert body["error"] == "predict() raised ValueError: request r5 asked to fail"
        assert body["error_id"]
        replies = replies[:5] + replies[6:]
    assert all(status == 200 for status, _ in replies), replies
    assert [body["y"] for _, body in replies] == [2.0 * int(body["id"][1:]) for _, body in replies]
    alone = [body for _, body in [held, *replies] if body["by"] == "predict"]
    assert alone, "the failing request's batch-mates should have been predicted one by one"
    n = len(alone) + (1 if bad.get("fail") else 0)  # the batch: each answered one by one
    expected = logged.format(n=n, m=n - 1)
    log = wait_for(lambda: expected in server.output() and server.output(), what=expected)
    assert log.count(expected) == 1  # the batch's failure, logged once


def test_the_sklearn_template_answers_a_batch_as_it_answers_each_request():
    """predict_batch() of the template gives each request the label predict() gives it, and
    the same probability to the last bits BLAS may sum in another order for a stack of rows."""
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    namespace: dict = {}
    exec((ROOT / "templates" / "sklearn" / "model.py").read_text(), namespace)
    model = namespace["Classifier"]()
    X, y = make_classification(n_samples=300, n_features=20, n_informative=8, random_state=0)
    model.model = LogisticRegression(max_iter=200).fit(X, y)
    rows = np.random.default_rng(1).normal(size=(9, 20)).round(3)
    requests = [{"features": row.tolist()} for row in rows[:7]] + [
        {"features": rows[7:].tolist()}  # two rows in one request
    ]
    batched = [json.loads(to_json_bytes(r)) for r in model.predict_batch(requests)]
    single = [json.loads(to_json_bytes(model.predict(r))) for r in requests]
    assert len(batched) == len(requests)
    for one, many in zip(single, batched, strict=True):
        assert one["label"] == many["label"]
        assert np.allclose(one["probability"], many["probability"], rtol=1e-12, atol=0)
    assert isinstance(single[0]["label"], int) and isinstance(single[7]["label"], list)
    with pytest.raises(ValueError):  # a malformed request fails its batch; the server then
        model.predict_batch([requests[0], {"features": [1.0, 2.0]}])  # predicts one by one


def test_worker_mode_ignores_predict_batch_and_calls_predict(server):
    project = Project(server.gates.parent)
    worker = DevServer(project, "model.py", "--inference", "worker")
    try:
        wait_for(
            lambda: _health(worker.url) == 200,
            timeout=90,
            what=f"the worker-mode server to be ready:\n{worker.output()}",
        )
        response = httpx.post(f"{worker.url}/predict", json={"x": 4, "id": "w"}, timeout=10)
        assert response.status_code == 200, response.text
        assert (response.json()["y"], response.json()["by"]) == (8.0, "predict")
    finally:
        assert worker.stop() == 0

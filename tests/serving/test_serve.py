"""`mllib serve`: a real dev server on a loopback port, real HTTP, in both inference modes:
inline (2 HTTP processes that each hold the model) and worker (2 API servers, 2 workers)."""

from __future__ import annotations

import json
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mllib.serving.spec import INFERENCE_MODES, INLINE
from tests.conftest import wait_for
from tests.serving.conftest import DevServer, cli


@pytest.fixture(scope="module", params=INFERENCE_MODES)
def dev(request, served_project):
    """The v4 run (2 s to load) served with `mllib serve model.py --run ... --inference MODE`."""
    run = served_project.runs["v4"]
    server = DevServer(served_project, "model.py", "--run", run, "--inference", request.param)
    server.project = served_project
    server.inference = request.param
    yield server
    server.stop()


def get(url: str, **kwargs) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5, **kwargs)
    except httpx.TransportError:
        return None


def predict(dev, body, **kwargs) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{dev.url}/predict", content=content, timeout=10, **kwargs)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, parsed with prometheus_client's own parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(parsed: dict, name: str, **labels: str) -> float:
    return sum(
        v
        for (n, lbls), v in parsed.items()
        if n == name and all((k, labels[k]) in lbls for k in labels)
    )


def test_health_says_loading_until_every_worker_has_loaded_the_model(dev):
    first = wait_for(lambda: get(f"{dev.url}/health"), timeout=60, what="the dev server to answer")
    assert first.status_code == 503, first.text
    assert first.json()["status"] == "loading"
    assert "loading the model" in first.json()["detail"]
    ready = wait_for(
        lambda: (r := get(f"{dev.url}/health")) is not None and r.status_code == 200 and r,
        timeout=60,
        what="/health to turn 200",
    )
    assert ready.json() == {
        "status": "ok",
        "env": "dev",
        "model": "served",
        "version": "4",
        "variant": "stable",
    }


def test_predict_answers_numpy_and_pandas_values_as_json(dev):
    response = predict(dev, {"x": [1, 2, 3]}, headers={"x-request-id": "req-42"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == "req-42"
    body = response.json()
    assert body["y"] == [2.0, 4.0, 6.0]
    assert body["total"] == 6.0
    assert body["rows"] == [
        {"x": 1.0, "big": False},
        {"x": 2.0, "big": True},
        {"x": 3.0, "big": True},
    ]


def test_a_body_that_is_not_json_gets_400_saying_so(dev):
    response = predict(dev, b"{not json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("The request body is not valid JSON")
    assert response.json()["error_id"]


def test_predict_raising_gets_500_with_an_error_id_and_the_server_keeps_serving(dev):
    response = predict(dev, {"fail": True})
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "predict() raised ValueError: asked to fail"
    error_id = body["error_id"]
    assert response.headers["x-request-id"] == error_id
    log = wait_for(lambda: error_id in dev.output() and dev.output(), what="the error in the log")
    entry = log[log.index(f"request {error_id}") :]
    assert "Traceback (most recent call last)" in entry
    assert 'in predict\n    raise ValueError("asked to fail")' in entry
    assert predict(dev, {"x": [1]}).status_code == 200


def test_a_request_the_model_refuses_gets_its_4xx_and_counts_as_a_client_error(dev):
    before = samples(httpx.get(f"{dev.url}/metrics", timeout=5).text)
    answers = [predict(dev, {"refuse": status}) for status in (400, 422, 422)]
    assert [a.status_code for a in answers] == [400, 422, 422]
    for answer in answers:
        assert answer.json()["error"] == "expected a list under 'x'"
        assert answer.json()["error_id"] == answer.headers["x-request-id"]
    after = samples(httpx.get(f"{dev.url}/metrics", timeout=5).text)

    def added(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert added("mllib_requests_total", status="422") == 2
    assert added("mllib_request_errors_total", reason="bad_request") == 3
    assert added("mllib_request_errors_total", reason="predict_error") == 0
    error_id = answers[1].json()["error_id"]
    log = wait_for(lambda: error_id in dev.output() and dev.output(), what="the refusal logged")
    line = log[log.index(f"request {error_id}") :].splitlines()[0]
    assert "refused it (422): expected a list under 'x'" in line
    assert "Traceback" not in log[log.index(f"request {error_id}") :][:2000]


def test_a_result_json_cannot_hold_gets_500_naming_its_type(dev):
    response = predict(dev, {"opaque": True})
    assert response.status_code == 500
    assert "values of type model.Opaque are not JSON-serialisable" in response.json()["error"]


def test_metrics_add_up_every_api_server_and_worker(dev):
    before = samples(httpx.get(f"{dev.url}/metrics", timeout=5).text)

    def one(_):  # a new connection each time, so both API servers take some
        return predict(dev, {"x": [1], "sleep": 0.02}).json()["worker_pid"]

    with ThreadPoolExecutor(8) as pool:
        pids = set(pool.map(one, range(40)))
    assert len(pids) == 2, "both workers should have served"
    after = samples(httpx.get(f"{dev.url}/metrics", timeout=5).text)
    labels = {"env": "dev", "model": "served", "version": "4"}
    ok = "mllib_requests_total"
    assert (
        total(after, ok, status="200", **labels) - total(before, ok, status="200", **labels) == 40
    )
    predicted = "mllib_predict_duration_seconds_count"
    assert total(after, predicted, **labels) - total(before, predicted, **labels) == 40
    latency = "mllib_request_duration_seconds_count"
    assert total(after, latency, **labels) - total(before, latency, **labels) == 40
    assert total(after, ok, status="500", **labels) >= 2  # the failing requests above
    metric_files = list(
        (dev.project.root / ".mllib/serving/dev" / str(dev.port) / "metrics").iterdir()
    )
    writers = {int(p.stem.rsplit("_", 1)[1]) for p in metric_files if p.stem[-1].isdigit()}
    assert pids <= writers, "each worker wrote its own metric files, added up by /metrics"


def test_openapi_documents_predict_and_the_docs_page_answers(dev):
    schema = httpx.get(f"{dev.url}/openapi.json", timeout=5).json()
    responses = schema["paths"]["/predict"]["post"]["responses"]
    assert {"200", "400", "500", "503"} <= set(responses)
    assert "/health" in schema["paths"] and "/metrics" in schema["paths"]
    docs = httpx.get(f"{dev.url}/docs", timeout=5)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_a_dead_worker_makes_health_unhealthy_until_it_is_replaced(dev):
    crashed = {}

    def crash() -> None:
        try:
            crashed["reply"] = predict(dev, {"crash": True})
        except httpx.TransportError as exc:
            crashed["error"] = exc

    thread = threading.Thread(target=crash)
    thread.start()
    unhealthy = wait_for(
        lambda: (r := get(f"{dev.url}/health")) is not None and r.status_code == 503 and r,
        timeout=20,
        what="/health to report the dead worker",
    )
    assert unhealthy.json()["status"] in ("unhealthy", "loading")
    assert predict(dev, {"x": [2]}).status_code == 200  # the other worker goes on serving
    wait_for(
        lambda: (r := get(f"{dev.url}/health")) is not None and r.status_code == 200,
        timeout=60,
        what="the worker to be restarted",
    )
    thread.join(timeout=30)
    if dev.inference == INLINE:  # the process that held the connection is gone: it is closed
        assert isinstance(crashed["error"], httpx.RemoteProtocolError | httpx.ReadError)
        assert "starting it again" in dev.output()
    else:  # its request was lost with the worker: a timeout, not a hang
        assert crashed["reply"].status_code == 504


def test_a_prediction_slower_than_the_timeout_gets_504_and_the_server_goes_on(dev):
    slow = predict(dev, {"x": [1], "sleep": 5})  # [serve] timeout_s = 4
    assert slow.status_code == 504
    assert slow.json()["error"] == "No prediction within 4s."
    assert get(f"{dev.url}/health").status_code == 200
    assert predict(dev, {"x": [1]}).status_code == 200


class Connection:
    """One raw HTTP/1.1 connection to the server: what a client sends, byte for byte, and the
    responses it reads back (status, headers, body)."""

    def __init__(self, dev) -> None:
        self.sock = socket.create_connection(("127.0.0.1", dev.port), timeout=15)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            self._more()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), headers, body

    def closed(self) -> bool:
        """Whether the server closed the connection (nothing more to read, within 1 s)."""
        self.sock.settimeout(1)
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"the server closed the connection; unread: {self.buffer!r}"
        self.buffer += chunk


def post(path: str, body: bytes, *headers: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_one_connection_carries_pipelined_requests_answered_in_order_then_more(dev):
    """Requests sent back to back before any answer (pipelining) get their answers in the order
    sent, /health among them; the connection stays open for the next ones (keep-alive)."""
    conn = Connection(dev)
    try:
        conn.send(
            post("/predict", b'{"x": [1]}', "X-Request-Id: first")
            + b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n"
            + post("/predict?debug=1", b'{"x": [2]}')
            + post("/predict", b"{not json")
        )
        answers = [conn.read() for _ in range(4)]
        assert [status for status, _, _ in answers] == [200, 200, 200, 400]
        assert json.loads(answers[0][2])["y"] == [2.0]
        assert answers[0][1]["x-request-id"] == "first"
        assert json.loads(answers[1][2])["status"] == "ok"
        assert json.loads(answers[2][2])["y"] == [4.0]
        assert answers[2][1]["content-type"] == "application/json"
        assert "not valid JSON" in json.loads(answers[3][2])["error"]
        conn.send(post("/predict", b'{"x": [3]}'))
        status, headers, body = conn.read()
        assert (status, json.loads(body)["y"]) == (200, [6.0])
        assert "connection" not in headers
        assert not conn.closed()
        conn.send(post("/predict", b'{"x": [4]}', "Connection: close"))
        status, headers, body = conn.read()
        assert (status, headers["connection"], json.loads(body)["y"]) == (200, "close", [8.0])
        assert conn.closed()
    finally:
        conn.close()


def test_a_request_that_asks_for_100_continue_gets_it_then_its_answer(dev):
    conn = Connection(dev)
    try:
        body = b'{"x": [1]}'
        conn.send(post("/predict", body, "Expect: 100-continue")[: -len(body)])
        while b"\r\n\r\n" not in conn.buffer:
            conn._more()
        interim, conn.buffer = conn.buffer.split(b"\r\n\r\n", 1)
        assert interim == b"HTTP/1.1 100 Continue"
        conn.send(body)
        status, _, answer = conn.read()
        assert (status, json.loads(answer)["y"]) == (200, [2.0])
    finally:
        conn.close()


def test_a_body_over_the_limit_gets_413_and_the_connection_goes_on(dev):
    conn = Connection(dev)
    try:
        conn.send(post("/predict", b"[" + b"1," * 5_000_000 + b"1]"))  # 10 MB + 3 bytes
        status, _, body = conn.read()
        assert status == 413
        assert json.loads(body)["error"] == "The request body is larger than 10 MB."
        conn.send(post("/predict", b'{"x": [1]}'))
        assert conn.read()[0] == 200
    finally:
        conn.close()


def test_a_malformed_request_gets_400_and_its_connection_is_closed(dev):
    for request in (
        b"NOT HTTP AT ALL\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nContent-Length: x\r\n\r\n",
    ):
        conn = Connection(dev)
        try:
            conn.send(request)
            status, headers, body = conn.read()
            assert (status, headers["connection"]) == (400, "close")
            assert body == b"Invalid HTTP request received."
            assert conn.closed()
        finally:
            conn.close()


def test_clients_that_go_away_mid_request_leave_the_server_answering(dev, tmp_path):
    """One hangs up halfway through its body, one while its prediction runs: the server answers
    the next requests, and logs no error for either."""
    tracebacks = dev.output().count("Traceback")
    halfway = Connection(dev)
    halfway.send(post("/predict", b'{"x": [1, 2, 3]}')[:-5])
    halfway.close()
    started = tmp_path / "started"
    waiting = Connection(dev)
    waiting.send(
        post("/predict", json.dumps({"x": [1], "sleep": 1, "started": str(started)}).encode())
    )
    wait_for(started.exists, what="the prediction to start")
    waiting.close()
    assert predict(dev, {"x": [5]}).json()["y"] == [10.0]
    assert get(f"{dev.url}/health").status_code == 200
    assert dev.output().count("Traceback") == tracebacks


@pytest.mark.parametrize("inference", INFERENCE_MODES)
def test_requests_that_timed_out_waiting_are_not_predicted_after_their_504(
    served_project, inference
):
    """One predicting thread or worker, three 5 s predictions queued at once: each gets its 504
    at 4 s, and the request after them waits only for the one in predict(), not the two whose
    clients have gone (predicting those too turned every later request into a 504)."""
    server = DevServer(
        served_project,
        "model.py",
        "--run",
        served_project.runs["v1"],
        "--inference",
        inference,
        "--workers",
        "1",
    )
    try:
        wait_for(lambda: (r := get(f"{server.url}/health")) and r.status_code == 200, timeout=90)
        with ThreadPoolExecutor(3) as pool:
            slow = list(pool.map(lambda _: predict(server, {"x": [1], "sleep": 5}), range(3)))
        assert [r.status_code for r in slow] == [504, 504, 504]
        assert predict(server, {"x": [1]}).status_code == 200
    finally:
        server.stop()


def test_ctrl_c_stops_the_server_and_every_process_it_started(dev):
    import psutil

    members = [p for p in psutil.process_iter() if _pgid(p.pid) == dev.proc.pid]
    # main and 2 API servers, plus 2 workers in worker mode (and the resource tracker)
    assert len(members) >= (3 if dev.inference == INLINE else 5)
    assert dev.stop(signal.SIGINT) == 0
    wait_for(
        lambda: (
            not [p for p in psutil.process_iter() if _pgid(p.pid) == dev.proc.pid and _alive(p)]
        ),
        timeout=20,
        what="every process to end",
    )
    assert "Shutting down" in dev.output()


def _pgid(pid: int) -> int | None:
    import os

    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _alive(proc) -> bool:
    import psutil

    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_the_original_spelling_reaches_serve(served_project):
    result = cli(served_project, "model.py", "--serve", "--port", "80")
    assert result.returncode == 2
    assert "--port got '80': allowed is a whole number from 1024 to 65535" in result.output


def test_serve_takes_a_version_by_name_or_uses_the_newest_and_says_which(served_project):
    named = DevServer(served_project, "--model", "served:2", "--inference", "inline")
    try:
        wait_for(lambda: get(f"{named.url}/health"), timeout=90, what="the dev server to answer")
        answer = httpx.post(f"{named.url}/predict", json={"x": [1]}, timeout=10)
        assert answer.status_code == 200 and answer.json()["bias"] == 1.0, answer.text
    finally:
        named.stop()
    assert f"Serving served v2 (run {served_project.runs['v2']})" in named.output()
    newest = DevServer(served_project, "model.py")
    try:
        line = f"using served v4 (run {served_project.runs['v4']}): the newest version of served"
        wait_for(lambda: line in newest.output(), timeout=60, what="the line naming the version")
    finally:
        newest.stop()


def test_serving_a_file_with_no_trained_run_says_what_to_do(served_project):
    result = cli(served_project, "serve", "model.py", "--bias=7")
    assert result.returncode == 4
    assert "No successful training run of served" in result.output
    assert "mllib train model.py" in result.output


def test_a_model_that_cannot_be_loaded_stops_the_server_with_its_traceback(served_project):
    server = DevServer(served_project, "model.py", "--run", served_project.runs["v3"])
    assert server.proc.wait(timeout=90) == 3
    output = server.output()
    assert "loading the model raised RuntimeError: this model refuses to load" in output
    assert 'raise RuntimeError("this model refuses to load")' in output
    assert "Error: the model could not be loaded" in output
    assert "Error setting up worker" not in output  # reported once, not again by LitServe

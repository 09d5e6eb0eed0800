"""A live deployment's /metrics and log as an operator watches them: every status and error
reason present at 0 before the first request (so Prometheus' rate() sees the first error), each
process's CPU, memory and open files, `promtool check metrics` passing before and after the
first error, request lines with a `level`, and server.log rotated past [deploy] log_max_mb with
`mllib deploy logs --tail/--since` reading across the rotated copies."""

from __future__ import annotations

import json
import subprocess
import time

import httpx

from tests.conftest import Project, wait_for
from tests.serving.test_serve import samples

MODEL = """
import mllib

class Checked:
    def train(self):
        pass

    def predict(self, request):
        if request.get("fail"):
            raise ValueError("asked to fail")
        if "x" not in request:
            raise mllib.BadRequest("expected a field 'x'", status=422)
        return {"y": request["x"] * 2}
"""

CONFIG = """
name = "checked"

[deploy]
ready_timeout_s = 90
log_max_mb = 0.004
log_keep = 2
"""


def value(found: dict, name: str, **labels: str) -> float | None:
    hits = [v for (n, ls), v in found.items() if n == name and set(labels.items()) <= set(ls)]
    return sum(hits) if hits else None


def check(promtool: str, text: str) -> None:
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_metrics_start_at_zero_pass_promtool_and_the_log_rotates(project: Project, promtool):
    project.write("model.py", MODEL)
    project.write("mllib.toml", CONFIG)
    assert project.mllib("train", "model.py", "--runtime", "process").returncode == 0
    deployed = project.mllib("deploy", "checked:1", "--env", "staging")
    assert deployed.returncode == 0, deployed.output
    try:
        (status,) = project.mllib("deploy", "status", "--env", "staging", "--json").json()
        url = status["url"]
        first = httpx.get(f"{url}/metrics", timeout=10).text
        check(promtool, first)
        found = samples(first)
        for code in ("200", "400", "401", "413", "422", "429", "500", "504"):
            assert value(found, "mllib_requests_total", status=code) == 0, code
        for reason in ("bad_request", "predict_error", "rate_limited", "timeout", "too_large"):
            assert value(found, "mllib_request_errors_total", reason=reason) == 0, reason
        pids = {dict(ls)["pid"] for (n, ls) in found if n == "process_resident_memory_bytes"}
        assert len(pids) >= 2  # the controller and the server's process, each its own
        assert all(value(found, "process_open_fds", pid=pid) > 0 for pid in pids)

        with httpx.Client(timeout=10) as client:
            assert client.post(f"{url}/predict", json={"fail": True}).status_code == 500
            assert client.post(f"{url}/predict", json={"y": 1}).status_code == 422
            for x in range(40):  # ~200 bytes a line: past 4 KB, the log is rotated
                assert client.post(f"{url}/predict", json={"x": x}).status_code == 200
        after = httpx.get(f"{url}/metrics", timeout=10).text
        check(promtool, after)
        found = samples(after)
        assert value(found, "mllib_requests_total", status="500") == 1
        assert value(found, "mllib_request_errors_total", reason="predict_error") == 1
        assert value(found, "mllib_request_errors_total", reason="bad_request") == 1

        folder = project.root / ".mllib" / "serving"
        rotated = wait_for(
            lambda: list(folder.rglob("server.log.1")), timeout=30, what="server.log rotated"
        )
        assert rotated and not list(folder.rglob("server.log.3"))  # log_keep = 2

        every = project.mllib("deploy", "logs", "--env", "staging", "--json", "--since", "1h")
        requests = [
            line for line in map(json.loads, every.stdout.splitlines())
            if line.get("event") == "request"
        ]  # fmt: skip
        levels = {line["status"]: line["level"] for line in requests}
        assert levels == {200: "info", 422: "warning", 500: "error"}
        assert len(requests) == 42  # every request, from the rotated copy and the log itself
        whole = project.mllib("deploy", "logs", "--env", "staging", "--json").stdout.splitlines()
        last = project.mllib("deploy", "logs", "--env", "staging", "--json", "--tail", "3")
        assert last.stdout.splitlines() == whole[-3:] and len(whole) > 42
        future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        later = project.mllib("deploy", "logs", "--env", "staging", "--since", future)
        assert later.returncode == 0 and later.stdout == ""
        bad = project.mllib("deploy", "logs", "--env", "staging", "--since", "yesterday")
        assert bad.returncode == 2 and "--since must be a duration like 10m" in bad.stderr
    finally:
        project.mllib("deploy", "stop", "--env", "staging")

"""`from mllib import sentry_plugin; sentry_plugin.enable()` in a model.py, end to end: real runs
(`mllib train`) and a real deployment report through the real sentry-sdk transport to a local
HTTP endpoint standing in for Sentry's ingest (Sentry's cloud cannot be reached from tests), and
the tests read the envelopes it received.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import ROOT, Project, run_cli
from tests.monitoring.sentry_ingest import SentryIngest, exception_of

SECRET = "tok-3f9a1c77e2"


@pytest.fixture
def ingest():
    with SentryIngest() as endpoint:
        yield endpoint


@pytest.fixture
def reported(project: Project) -> Project:
    project.write("model.py", (ROOT / "tests" / "models" / "reported.py").read_text())
    return project


def test_a_failed_run_is_reported_with_its_tags_and_secrets_as_stars(reported, ingest):
    reported.write("mllib.toml", f'name = "reported"\n\n[sentry]\ndsn = "{ingest.dsn}"\n')
    result = reported.mllib("train", "model.py", "--fail=train", f"--api_token={SECRET}")
    assert result.returncode == 1, result.output
    run = reported.last_run()
    assert run["failure_class"] == "user_error"

    [event] = ingest.wait_events(1)
    error = exception_of(event)
    assert error["type"] == "ValueError"
    assert error["value"] == "training diverged (token ***)"
    assert any(f["function"] == "train" for f in error["stacktrace"]["frames"])
    tags = event["tags"]
    assert tags["run_id"] == run["id"]
    assert tags["model"] == "reported"
    assert tags["action"] == "train"
    assert tags["runtime"] == run["runtime"]  # docker where an engine is up (auto), else process
    assert tags["failure_class"] == "user_error"
    assert tags["param.learning_rate"] == "0.1"
    assert tags["param.api_token"] == "***"
    assert "agent" not in tags  # a local run
    assert event["contexts"]["mllib"]["params"]["api_token"] == "***"
    assert SECRET not in ingest.raw()  # not in the message, the locals or anywhere else
    time.sleep(0.5)
    assert len(ingest.events()) == 1  # reported once


EARLY = """
import os

from mllib import sentry_plugin

sentry_plugin.enable()

import mllib


class Early:
    def __init__(self):
        self.api_token = mllib.Param("", env="API_TOKEN")
        raise ValueError(f"cannot reach the hub with {os.environ['API_TOKEN']!r}")

    def train(self):
        pass

    def predict(self, request):
        return request
"""


def test_a_secret_in_an_error_before_the_params_are_read_is_stars_in_the_report(project, ingest):
    """The worker knows a secret param's values before the model's code runs; a report made
    then (the class's __init__ failing) hides it too, in its repr spelling as well."""
    project.write("model.py", EARLY)
    project.write("mllib.toml", f'name = "early"\n\n[sentry]\ndsn = "{ingest.dsn}"\n')
    secret = "tok-'quoted'-9c2e"
    result = project.mllib("train", "model.py", env={"API_TOKEN": secret})
    assert result.returncode == 1, result.output
    [event] = ingest.wait_events(1)
    assert exception_of(event)["value"] == 'cannot reach the hub with "***"'
    assert "9c2e" not in ingest.raw()  # neither the value nor its repr, anywhere
    assert "9c2e" not in result.output


def test_a_system_error_is_tagged_as_such_and_the_dsn_may_come_from_the_env_file(reported, ingest):
    reported.write(".env.local", f"SENTRY_DSN={ingest.dsn}\n")
    result = reported.mllib("train", "model.py", "--fail=memory", "--runtime", "process")
    assert result.returncode == 3, result.output
    [event] = ingest.wait_events(1)
    assert exception_of(event)["type"] == "MemoryError"
    assert event["tags"]["failure_class"] == "system_error"
    assert event["tags"]["run_id"] == reported.last_run()["id"]
    assert event["tags"]["runtime"] == "process"


def test_a_run_that_succeeds_reports_nothing(reported, ingest):
    result = reported.mllib("train", "model.py", env={"SENTRY_DSN": ingest.dsn})
    assert result.returncode == 0, result.output
    time.sleep(0.5)
    assert ingest.events() == []


def test_without_a_dsn_enable_is_silent_and_imports_nothing(reported):
    probe = (
        "import sys; from mllib import sentry_plugin; "
        "print(sentry_plugin.enable(), 'sentry_sdk' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "SENTRY_DSN"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=reported.root, env=env, capture_output=True, text=True
    )
    assert (out.stdout, out.stderr) == ("False False\n", "")
    result = reported.mllib("train", "model.py", "--fail=train")
    assert result.returncode == 1
    assert "sentry" not in result.output.lower()


def test_a_bad_dsn_is_one_line_that_does_not_repeat_it(reported):
    reported.write("mllib.toml", '[sentry]\ndsn = "ftp://secretkey@example.invalid/1"\n')
    result = reported.mllib("train", "model.py")
    assert result.returncode == 1
    assert "The Sentry DSN is not valid" in result.output
    assert "secretkey" not in result.output


# -- serving ------------------------------------------------------------------------------------


@pytest.fixture
def deployed(reported, ingest):
    """Version 1 (predict_batch works) and 2 (predict_batch raises) of reported.py, trained; the
    DSN in mllib.toml; deployments stopped at the end."""
    reported.write(
        "mllib.toml",
        f"""
        name = "reported"

        [serve]
        workers = 1
        max_batch = 8

        [deploy]
        ready_timeout_s = 90

        [sentry]
        dsn = "{ingest.dsn}"
        """,
    )
    for params in ((), ("--batch_bug=true",)):
        result = reported.mllib("train", "model.py", *params)
        assert result.returncode == 0, result.output
    yield reported
    run_cli(["deploy", "stop", "--env", "staging"], reported.root)


def _deploy(project: Project, version: int) -> str:
    result = project.mllib("deploy", f"reported:{version}", "--env", "staging")
    assert result.returncode == 0, result.output
    status = project.mllib("deploy", "status", "--env", "staging", "--json").json()
    [env] = status if isinstance(status, list) else [status]
    return env["url"]


def test_a_predict_exception_is_reported_once_with_its_request_id(deployed, ingest):
    url = _deploy(deployed, 1)
    status = deployed.mllib("deploy", "status", "--env", "staging", "--json").json()
    deployment = (status[0] if isinstance(status, list) else status)["deployment_id"]
    assert httpx.post(f"{url}/predict", json={"x": 2}, timeout=10).json() == {"y": 4}
    failed = httpx.post(f"{url}/predict", json={"fail": "this"}, timeout=10)
    assert failed.status_code == 500
    request_id = failed.headers["x-request-id"]
    assert failed.json()["error_id"] == request_id

    [event] = ingest.wait_events(1)
    assert exception_of(event)["value"] == "cannot predict this"
    tags = event["tags"]
    assert tags["request_id"] == request_id
    assert (tags["env"], tags["model"], tags["version"]) == ("staging", "reported", "1")
    assert tags["deployment"] == deployment
    assert tags["failure_class"] == "user_error"
    assert event["environment"] == "staging"
    time.sleep(1.0)
    assert len(ingest.events()) == 1  # not again through the server's error log


def test_predict_batch_failures_are_reported_once_each(deployed, ingest):
    """Version 2's predict_batch raises: each request is answered by predict() alone. A request
    whose predict() raises too is reported once, with its request id; a batch whose requests
    all succeeded alone is reported as predict_batch's own failure."""
    url = _deploy(deployed, 2)
    failed = httpx.post(f"{url}/predict", json={"fail": "alone"}, timeout=10)
    assert failed.status_code == 500
    [event] = ingest.wait_events(1)
    assert event["tags"]["request_id"] == failed.headers["x-request-id"]
    assert event["tags"]["event"] == "predict"

    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda x: httpx.post(f"{url}/predict", json={"x": x}, timeout=10), range(8))
        )
    assert [a.json() for a in answers] == [{"y": 2 * x} for x in range(8)]
    events = ingest.wait_events(2)
    batch = [e for e in events if e["tags"]["event"] == "predict_batch"]
    assert batch and all(exception_of(e)["type"] == "RuntimeError" for e in batch)
    reported_ids = {i for e in batch for i in e["tags"]["request_id"].split(",")}
    assert reported_ids <= {a.headers["x-request-id"] for a in answers}
    assert len([e for e in events if e["tags"]["event"] == "predict"]) == 1

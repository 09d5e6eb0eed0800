"""A LitServe API served as it is: tests/models/litapi_scale.py, written in LitServe's documented
style, served by a real `mllib serve` and deployed by a real `mllib deploy`, driven by real HTTP
clients. The API writes what it saw (setup's device, each predict's batch size) to a file outside
the project (the project's files are the version's code), so the tests see how mllib called it.

The one thing stood in for: an NVIDIA GPU (there is none here). A fake `nvidia-smi` on PATH that
lists one GPU shows that setup() gets "cuda:0" where one is present.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from mllib.serving.spec import INFERENCE_MODES
from tests.conftest import ROOT, Project, wait_for
from tests.serving.conftest import DevServer
from tests.serving.test_batching import burst
from tests.serving.test_serve import samples, total

CONFIG = """
name = "scaler"

[serve]
workers = 1
drain_s = 1.0
timeout_s = 20.0

[deploy]
ready_timeout_s = 90
stop_grace_s = 15
"""
HELPER = """
class Helper:
    def transform(self, x):
        return x
"""
FAKE_NVIDIA_SMI = """#!/bin/sh
# Stands in for an NVIDIA GPU's tool (there is no GPU here): lists one GPU, as nvidia-smi -L does.
echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-0000-0000-0000-000000000000)"
"""


@pytest.fixture(scope="module")
def api_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project of one LitServe API (api.py, its weights.json), and nothing trained."""
    root = tmp_path_factory.mktemp("litapi") / "proj"
    root.mkdir()
    project = Project(root)
    project.write("api.py", (ROOT / "tests" / "models" / "litapi_scale.py").read_text())
    project.write("weights.json", '{"scale": 2, "bias": 1}')
    project.write("helper.py", HELPER)
    project.write("mllib.toml", CONFIG)
    project.write(".mllibignore", "serve-*.log\n")  # DevServer's logs are not the API's code
    project.gates = root.parent / "gates"
    project.gates.mkdir()
    return project


@pytest.fixture(scope="module", params=INFERENCE_MODES)
def server(request, api_project: Project):
    """`mllib serve api.py:ScaleAPI`: the API as it is, no training run; predicting in the
    HTTP process (inline) or in a LitServe worker process (worker)."""
    record = api_project.root.parent / f"record-{request.param}.jsonl"
    os.environ["LITAPI_RECORD"] = str(record)
    dev = DevServer(api_project, "api.py:ScaleAPI", "--inference", request.param)
    dev.gates, dev.record = api_project.gates, record
    try:
        wait_for(lambda: _health(dev.url) == 200, timeout=90, what=f"the server:\n{dev.output()}")
        yield dev
    finally:
        dev.stop()
        os.environ.pop("LITAPI_RECORD", None)


def _health(url: str) -> int | None:
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code
    except httpx.TransportError:
        return None


def seen(record: Path, event: str) -> list[dict]:
    """What the API wrote to `record`: the events named `event`."""
    if not record.exists():
        return []
    lines = record.read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == event]


def test_a_litapi_is_served_as_it_is_with_setup_once_on_the_cpu(server, api_project):
    reply = httpx.post(f"{server.url}/predict", json={"input": 3}, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"output": 7.0}  # decode_request -> predict -> encode_response
    (setup,) = seen(server.record, "setup")  # once, in the one process that predicts
    assert setup["device"] == "cpu"
    assert "ScaleAPI(max_batch_size=4, batch_timeout=0.05) set up in" in server.output()
    assert "on cpu (batches of up to 4)" in server.output()
    assert "the code of api.py:ScaleAPI" in server.output() and "scaler v1" in server.output()
    (model,) = api_project.mllib("models", "list", "--json").json()
    assert (model["name"], model["versions"]) == ("scaler", 1)
    (run,) = api_project.mllib("runs", "list", "--json").json()
    assert (run["action"], run["status"]) == ("package", "succeeded")
    shown = api_project.mllib("runs", "show", run["id"])
    assert shown.returncode == 0 and "package" in shown.stdout, shown.output
    rerun = api_project.mllib("runs", "rerun", run["id"])
    assert rerun.returncode == 2 and "nothing ran" in rerun.stderr, rerun.output


def test_its_batching_is_honoured_up_to_max_batch_size(server):
    before = [e["size"] for e in seen(server.record, "predict")]
    bodies = [json.dumps({"input": i}).encode() for i in range(9)]
    replies = burst(server, bodies, held_body=lambda gate: {"input": 0, "hold": gate})
    assert replies[1:] == [(200, {"output": 2.0 * i + 1}) for i in range(9)]
    sizes = [e["size"] for e in seen(server.record, "predict")][len(before) :]
    assert sum(sizes) == 10 and max(sizes) == 4, sizes  # the held batch, then batches of ≤ 4
    assert sizes.count(4) >= 1
    parsed = samples(httpx.get(f"{server.url}/metrics", timeout=10).text)
    batches = total(parsed, "mllib_predict_batch_size_count", model="scaler")
    requests = total(parsed, "mllib_predict_batch_size_sum", model="scaler")
    assert batches == len(before) + len(sizes) and requests == sum(before) + 10


def test_its_refusals_are_4xx_and_bad_json_a_400(server):
    refused = httpx.post(f"{server.url}/predict", json={"input": "three"}, timeout=30)
    assert refused.status_code == 422  # HTTPException(422) raised by decode_request
    assert refused.json()["error"] == "input must be a number"
    garbled = httpx.post(f"{server.url}/predict", content=b"{not json", timeout=30)
    assert garbled.status_code == 400
    assert "not valid JSON" in garbled.json()["error"]


def test_setup_gets_the_gpu_where_nvidia_smi_lists_one(api_project, monkeypatch):
    bin_dir = api_project.root.parent / "fake-bin"  # stands in for a GPU: there is none here
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    record = api_project.root.parent / "record-gpu.jsonl"
    monkeypatch.setenv("LITAPI_RECORD", str(record))
    dev = DevServer(api_project, "api.py:ScaleAPI")
    try:
        wait_for(lambda: _health(dev.url) == 200, timeout=90, what=f"the server:\n{dev.output()}")
        assert [e["device"] for e in seen(record, "setup")] == ["cuda:0"]
        assert "on cuda:0 (batches of up to 4)" in dev.output()
    finally:
        dev.stop()


def test_deploy_records_the_code_it_serves_and_keeps_the_staging_gate(api_project):
    staged = api_project.mllib("deploy", "api.py:ScaleAPI", "--env", "staging", timeout=180)
    assert staged.returncode == 0, staged.output
    (row,) = api_project.mllib("deploy", "status", "--env", "staging", "--json").json()
    assert (row["model"], row["version"], row["state"]) == ("scaler", 1, "live")
    try:
        reply = httpx.post(f"{row['url']}/predict", json={"input": 5}, timeout=30)
        assert reply.json() == {"output": 11.0}
        shown = api_project.mllib("models", "show", "scaler", "--json").json()
        assert [[d["env"] for d in v["deployed"]] for v in shown["versions"]] == [["staging"]]
        refused = api_project.mllib("deploy", "api.py:ScaleAPI", "--env", "prod")
        assert refused.returncode == 5, refused.output  # staged, but no load test passed
        assert "Refused: scaler v1 has not passed a load test on staging" in refused.output
        api_project.write("api.py", (api_project.root / "api.py").read_text() + "\n# changed\n")
        changed = api_project.mllib("deploy", "api.py:ScaleAPI", "--env", "prod")
        assert changed.returncode == 5, changed.output  # this code never went to staging
        assert "as it is now never went to staging" in changed.output
        (last, *_) = api_project.mllib("deploy", "history", "--json").json()
        assert (last["env"], last["action"], last["result"]) == ("prod", "deploy", "refused")
        (model,) = api_project.mllib("models", "list", "--json").json()
        assert model["versions"] == 1, "a refused prod deploy records no version"
        restaged = api_project.mllib("deploy", "api.py:ScaleAPI", "--env", "staging", timeout=180)
        assert restaged.returncode == 0 and "as scaler v2" in restaged.output, restaged.output
        back = api_project.mllib("deploy", "rollback", "--env", "staging", timeout=180)
        assert back.returncode == 0, back.output
        (row,) = api_project.mllib("deploy", "status", "--env", "staging", "--json").json()
        assert (row["version"], row["state"]) == (1, "live")  # the code recorded as v1
    finally:
        stopped = api_project.mllib("deploy", "stop", "--env", "staging", timeout=60)
        assert stopped.returncode == 0, stopped.output


TYPED = """
import litserve as ls
from pydantic import BaseModel


class Features(BaseModel):
    values: list[float]


class SumAPI(ls.LitAPI):
    def setup(self, device):
        self.weight = 10.0

    def decode_request(self, request: Features, context):
        context["count"] = len(request.values)
        return request.values

    def predict(self, x):
        return sum(x) * self.weight

    def encode_response(self, output, context):
        return {"sum": output, "count": context["count"]}


if __name__ == "__main__":
    ls.LitServer(SumAPI(api_path="/sum")).run(port=8000)
"""


def test_a_pydantic_request_is_validated_a_context_carried_and_its_api_path_served(
    tmp_path: Path,
):
    project = Project(tmp_path)
    project.write("api.py", TYPED)
    dev = DevServer(project, "api.py")  # the file's one class: a LitServe API
    try:
        wait_for(lambda: _health(dev.url) == 200, timeout=90, what=f"the server:\n{dev.output()}")
        fits = httpx.post(f"{dev.url}/predict", json={"values": [1, 2]}, timeout=30)
        assert fits.status_code == 200 and fits.json() == {"sum": 30.0, "count": 2}
        own = httpx.post(f"{dev.url}/sum", json={"values": [3]}, timeout=30)  # its api_path too
        assert own.status_code == 200 and own.json() == {"sum": 30.0, "count": 1}
        assert wait_for(lambda: " POST /sum " in dev.output(), what="the request logged at /sum")
        unfit = httpx.post(f"{dev.url}/predict", json={"values": "many"}, timeout=30)
        assert unfit.status_code == 422
        assert unfit.json()["error"].startswith("the request does not fit Features: values:")
        assert "SumAPI(api_path='/sum') set up in" in dev.output() and "batches" not in dev.output()
    finally:
        dev.stop()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["train", "api.py:ScaleAPI"], "is a LitServe API with no train() method"),
        (["api.py:ScaleAPI", "--train"], "is a LitServe API with no train() method"),
        (["evaluate", "api.py:ScaleAPI"], "is a LitServe API with no evaluate() method"),
        (["serve", "api.py:NoSuchAPI"], "api.py has no class named 'NoSuchAPI'"),
        (["serve", "helper.py:Helper"], "is neither a LitServe API nor a model class"),
    ],
)
def test_what_cannot_be_done_with_it_is_a_usage_error_and_records_nothing(api_project, args, says):
    before = api_project.mllib("runs", "list", "--json").json()
    result = api_project.mllib(*args)
    assert result.returncode == 2, result.output
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and says in error[0], result.output
    assert "internal error" not in result.output
    assert api_project.mllib("runs", "list", "--json").json() == before

"""Runs on a host that really has an NVIDIA GPU (a driver, nvidia-smi and a CUDA build of torch).

This machine and CI have none, so these tests skip here with that reason; the agent tests cover
per-run GPU slots with a stand-in nvidia-smi. Run them on a GPU host with
`python -m pytest tests/runtime/test_gpu.py`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from mllib.runtime.base import Job
from mllib.runtime.gpus import nvidia_gpus
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(
    shutil.which("nvidia-smi") is None, reason="needs an NVIDIA GPU and nvidia-smi (none here)"
)

CUDA_MODEL = """
import mllib


class CudaModel:
    def __init__(self):
        self.size = mllib.Param(256)

    def train(self):
        import torch

        x = torch.ones(self.size, self.size, device="cuda")
        mllib.log_metric("cuda_devices", torch.cuda.device_count())
        mllib.log_metric("matmul_sum", (x @ x).sum().item())

    def evaluate(self):
        return {"size": self.size}

    def predict(self, request):
        return request
"""


def _driver_count() -> int:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=count", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.splitlines()[0])


def test_gpus_listed_as_the_driver_counts_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "agents"))
    from mllib_agent.server import gpu_names

    count = _driver_count()
    assert len(nvidia_gpus()) == count
    assert len(gpu_names() or []) == count


def test_a_process_run_trains_on_the_gpu_and_records_it(project) -> None:
    pytest.importorskip("torch")
    project.write("model.py", CUDA_MODEL)
    result = project.mllib("train", "model.py", "--runtime", "process", "--size=128")
    assert result.returncode == 0, result.output
    run = project.last_run()
    metrics = run["metrics"]
    assert metrics["cuda_devices"] == _driver_count()
    assert metrics["matmul_sum"] == 128.0**3
    recorded = run["environment"]["gpus"]  # the run's environment names the GPUs it had
    assert [g["name"] for g in recorded] == [
        n.split(": ", 1)[1].split(" (UUID")[0] for n in nvidia_gpus()
    ]
    assert all(g["driver"] and g["cuda"] for g in recorded)
    assert "gpu:" in project.mllib("runs", "show", run["id"]).stdout


def test_a_run_given_one_gpu_sees_only_that_gpu(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("this torch build has no CUDA")
    job = Job("r", tmp_path, tmp_path, tmp_path, gpus=["0"])
    probe = "import torch; print(torch.cuda.device_count(), torch.cuda.get_device_name(0))"
    env = {**job.gpu_env(), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout.split(maxsplit=1)
    assert out[0] == "1"
    assert nvidia_gpus()[0].split(": ", 1)[1].startswith(out[1].strip())

"""GPU detection on an agent goes through nvidia-smi. There is no NVIDIA GPU here, so these tests
put a stand-in nvidia-smi on PATH that prints what the real one prints: the GPU is simulated."""

from __future__ import annotations

import sys
from pathlib import Path

from mllib.agents.config import AgentSpec

AGENT_PROGRAM = str(Path(__file__).resolve().parents[2] / "agents")


def gpu_names():
    """The agent program's own detection (it lives in agents/, beside the mllib package)."""
    if AGENT_PROGRAM not in sys.path:
        sys.path.insert(0, AGENT_PROGRAM)
    from mllib_agent.server import gpu_names as detect

    return detect()


def _fake_nvidia_smi(folder: Path, body: str) -> None:
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)


def test_gpus_counted_with_nvidia_smi(tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path, 'echo "NVIDIA H100 80GB HBM3"; echo "NVIDIA H100 80GB HBM3"')
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    names = gpu_names()
    assert names == ["NVIDIA H100 80GB HBM3"] * 2
    assert AgentSpec("a", "h").slots(len(names)) == 2
    assert AgentSpec("a", "h", gpus=1).slots(len(names)) == 1  # --gpus wins


def test_no_or_failing_nvidia_smi_means_no_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu_names() is None
    _fake_nvidia_smi(tmp_path, "echo 'NVIDIA-SMI has failed' >&2; exit 9")
    assert gpu_names() is None
    assert AgentSpec("a", "h").slots(None) == 1  # a CPU-only agent takes one run at a time


TWO_GPUS = """#!/bin/sh
# A stand-in for nvidia-smi: this machine has no GPU, so these two GPUs are simulated.
case "$*" in
  *--query-gpu=name*) echo "NVIDIA H100 80GB HBM3"; echo "NVIDIA H100 80GB HBM3" ;;
  *) echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)"; echo "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-1)" ;;
esac
"""

GPU_MODEL = """
import os
import time

import mllib


class WhichGpu:
    def __init__(self):
        self.hold = mllib.Param("")  # a file to wait for: the run holds its GPU until it exists
        self.release = mllib.Param("")  # a file to create once this run holds its GPU

    def train(self):
        gpu = os.environ["CUDA_VISIBLE_DEVICES"]
        print(f"CUDA_VISIBLE_DEVICES={gpu} CUDA_DEVICE_ORDER={os.environ['CUDA_DEVICE_ORDER']}")
        mllib.log_metric("gpu", int(gpu))
        if self.release:
            open(self.release, "w").close()
        deadline = time.monotonic() + 300
        while self.hold and not os.path.exists(self.hold) and time.monotonic() < deadline:
            time.sleep(0.1)

    def predict(self, request):
        return request
"""


def test_two_runs_on_a_two_gpu_agent_get_a_gpu_each(lab, agents, project):
    """The agent's host lists two (simulated) GPUs; its runs overlap, each sees its own."""
    import shutil
    import uuid

    from helpers import detached_run, run_record, wait_finished
    from sshlab import wait_for

    from mllib.agents.api import add_agent

    host = lab.hosts[1]
    bin_dir = lab.base / f"bin-{host.user}"  # where the agent's user may run it
    bin_dir.mkdir(mode=0o755)
    _fake_nvidia_smi(bin_dir, TWO_GPUS.removeprefix("#!/bin/sh\n"))
    (project / "model.py").write_text(GPU_MODEL)
    with host.path_first(bin_dir):
        report = add_agent("gpu2", **lab.spec_args(host), trust_host_key=True)  # GPUs counted
        assert (report["gpus"], report["gpus_from"], report["slots"]) == (2, "nvidia-smi", 2)
        # The runs overlap however slow the machine: the first holds its GPU until the second runs.
        release = f"/tmp/mllib-gpus-{uuid.uuid4().hex}"
        first = detached_run(project, "--agent", "gpu2", f"--hold={release}")
        wait_for(lambda: host.worker_pids(), what="the first run's worker", timeout=120)
        second = detached_run(project, "--agent", "gpu2", f"--release={release}")
        records = [wait_finished(project, run_id) for run_id in (first, second)]
    shutil.rmtree(bin_dir)

    assert [r.status for r in records] == ["succeeded", "succeeded"]
    ws_metrics = {r.id: _metric(project, r.id, "gpu") for r in records}
    assert sorted(ws_metrics.values()) == [0.0, 1.0]
    for record in records:
        gpu = int(ws_metrics[record.id])
        assert (
            f"CUDA_VISIBLE_DEVICES={gpu} CUDA_DEVICE_ORDER=PCI_BUS_ID"
            in Path(record.log_path).read_text()
        )
        assert f"; GPU {gpu} (CUDA_VISIBLE_DEVICES)" in run_record(project, record.id).runtime_note


def _metric(project, run_id, name):
    from helpers import workspace

    from mllib.runs import views

    return views.show(workspace(project), run_id)["metrics"][name]

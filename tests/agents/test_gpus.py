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

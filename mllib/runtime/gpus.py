"""NVIDIA GPUs on this host, seen through `nvidia-smi -L` (no driver, no GPUs: an empty list).

Docker's GPU device requests fail on a host without the NVIDIA driver, so the Docker runtime
asks for GPUs only when this finds some.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import lru_cache


def nvidia_gpus() -> list[str]:
    """The GPUs `nvidia-smi -L` lists, e.g. ["GPU 0: NVIDIA A100 (UUID: GPU-...)"]."""
    return list(_listed(os.environ.get("PATH", "")))


@lru_cache(maxsize=4)
def _listed(path: str) -> tuple[str, ...]:
    exe = shutil.which("nvidia-smi", path=path)
    if exe is None:
        return ()
    try:
        result = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if result.returncode != 0:
        return ()
    return tuple(line.strip() for line in result.stdout.splitlines() if line.startswith("GPU "))


def gpu_note(assigned: list[str] | None = None) -> str:
    """One line for the run header: which GPUs a container gets (`assigned`: the run's own,
    by index; None: all of them), or that it runs on CPU."""
    gpus = nvidia_gpus()
    if not gpus:
        return "no NVIDIA GPU here (nvidia-smi finds none), so it runs on CPU"
    if assigned is not None:
        return f"NVIDIA GPU {','.join(assigned)} of {len(gpus)} passed to the container"
    return f"{len(gpus)} NVIDIA GPU{'s' if len(gpus) > 1 else ''} passed to the container"

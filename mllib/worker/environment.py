"""The run's environment, as the worker sees it where it runs, recorded with the run.

Python (version, implementation), the platform and CPU, NVIDIA GPUs with their driver and CUDA
version when nvidia-smi answers (the ones the run may use), every installed distribution
(name -> version, and a hash of the whole set; read once per environment, see
mllib.worker.package_cache), the numeric variables that pick BLAS kernels
and thread counts, and which runtime ran it (`MLLIB_RUNTIME`, and its image tag or venv key in
`MLLIB_RUNTIME_ID`, set by the runtime). The worker gathers it on a thread while the model
loads, and writes it as one `environment` event.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Any

from mllib.protocol.numeric_env import numeric_environment
from mllib.worker.package_cache import cached_packages


def describe_environment() -> dict[str, Any]:
    """The environment of this process (see the module docstring)."""
    packages = cached_packages(installed_packages)
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpus": nvidia_gpus(),
        "packages": packages,
        "packages_hash": packages_hash(packages),
        "numeric_env": numeric_environment(),
        "runtime": os.environ.get("MLLIB_RUNTIME"),
        "runtime_id": os.environ.get("MLLIB_RUNTIME_ID"),
        "note": os.environ.get("MLLIB_ENV_NOTE"),
    }


def installed_packages() -> dict[str, str]:
    """Canonical distribution name -> version, as this interpreter imports them (the first of
    a name on sys.path wins, as for imports). Read from every distribution's metadata: ~100 ms
    of CPU, so runs read it through mllib.worker.package_cache."""
    from importlib import metadata

    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(re.sub(r"[-_.]+", "-", name).lower(), dist.version)
    return dict(sorted(found.items()))


def packages_hash(packages: dict[str, str]) -> str:
    """sha256 of `name==version` lines, sorted: equal sets of packages, equal hashes."""
    text = "".join(f"{name}=={version}\n" for name, version in sorted(packages.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(("model name", "Model", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvidia_gpus() -> list[dict[str, str]]:
    """The NVIDIA GPUs this process may use: index, name, driver and CUDA version, memory
    (nvidia-smi; CUDA_VISIBLE_DEVICES narrows them). [] without nvidia-smi or GPUs."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        listed = subprocess.run(
            [exe, "--query-gpu=index,name,driver_version,memory.total,uuid",
             "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        header = subprocess.run([exe], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if listed.returncode != 0:
        return []
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", header.stdout)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    wanted = {v.strip() for v in visible.split(",")} if visible is not None else None
    gpus = []
    for line in listed.stdout.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 5:
            continue
        index, name, driver, memory, uuid = fields[:5]
        if wanted is not None and index not in wanted and uuid not in wanted:
            continue
        gpus.append(
            {
                "index": index,
                "name": name,
                "driver": driver,
                "cuda": cuda.group(1) if cuda else "",
                "memory": memory,
            }
        )
    return gpus

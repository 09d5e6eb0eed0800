"""Every run records the environment it ran in (Python, platform, CPU, GPUs, packages and their
hash, BLAS/threading variables, the runtime and its id); `runs show` summarises it, `--json` has
it all, `runs compare` shows where runs differ and warns about what changes results."""

from __future__ import annotations

import hashlib
import os
import platform
import stat
import sys
from importlib import metadata
from pathlib import Path

from mllib.runs.views import compare_environments
from tests.conftest import Project


def test_a_run_records_the_environment_it_ran_in(model_project: Project) -> None:
    result = model_project.mllib(
        "train", "model.py", "--runtime", "process", env={"OMP_NUM_THREADS": "3"}
    )

    assert result.returncode == 0, result.output
    run = model_project.last_run()
    env = run["environment"]
    assert (env["python"], env["implementation"]) == (
        platform.python_version(),
        platform.python_implementation(),
    )
    assert (
        env["machine"] == platform.machine() and env["cpu"] and env["cpu_count"] == os.cpu_count()
    )
    assert env["packages"]["cloudpickle"] == metadata.version("cloudpickle")
    lines = "".join(f"{n}=={v}\n" for n, v in sorted(env["packages"].items()))
    assert env["packages_hash"] == hashlib.sha256(lines.encode()).hexdigest()
    assert env["numeric_env"]["OMP_NUM_THREADS"] == "3"
    assert (env["runtime"], env["runtime_id"]) == ("process", sys.prefix)
    assert env["gpus"] == []  # no NVIDIA GPU here
    shown = model_project.mllib("runs", "show", run["id"]).stdout
    assert "Environment" in shown and f"python:    {platform.python_version()}" in shown
    assert "OMP_NUM_THREADS=3" in shown and f"(sha256 {env['packages_hash'][:16]})" in shown


def test_compare_shows_environment_differences_and_warns(model_project: Project) -> None:
    for threads in ("1", "2"):
        result = model_project.mllib(
            "train", "model.py", "--runtime", "process", env={"OMP_NUM_THREADS": threads}
        )
        assert result.returncode == 0, result.output
    ids = [r["id"] for r in model_project.mllib("runs", "list", "--json").json()]

    data = model_project.mllib("runs", "compare", *ids, "--json").json()
    shown = model_project.mllib("runs", "compare", *ids)

    assert data["environment"]["differs"] == ["OMP_NUM_THREADS"]
    assert data["environment"]["values"]["OMP_NUM_THREADS"] == dict(
        zip(ids, ["2", "1"], strict=True)
    )
    assert "OMP_NUM_THREADS" in shown.stdout
    assert "warning: BLAS/threading variables differ (OMP_NUM_THREADS)" in shown.stderr


def test_python_and_key_package_differences_are_warnings() -> None:
    def env(python: str, numpy: str, extra: dict[str, str]) -> dict:
        return {"python": python, "packages": {"numpy": numpy, **extra}, "numeric_env": {}}

    compared = compare_environments(
        {
            "a": env("3.11.7", "2.4.6", {"rich": "13.0"}),
            "b": env("3.12.1", "1.26.4", {}),
            "c": None,  # ran before environments were recorded: left out
        }
    )

    assert "python" in compared["differs"]
    assert compared["packages"] == {
        "numpy": {"a": "2.4.6", "b": "1.26.4"},
        "rich": {"a": "13.0", "b": None},
    }
    assert compared["warnings"] == [
        "the runs ran on different Pythons (3.11.7, 3.12.1): results and pickled models may differ",
        "numpy differs: 2.4.6 (a), 1.26.4 (b)",
    ]


def test_gpus_are_recorded_from_nvidia_smi(model_project: Project, tmp_path: Path) -> None:
    """No GPU here: a stand-in nvidia-smi prints what the real one prints (simulated GPUs)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        "  --query-gpu=*) echo '0, NVIDIA H100 80GB HBM3, 580.82.07, 81559 MiB, GPU-aaa'; "
        "echo '1, NVIDIA H100 80GB HBM3, 580.82.07, 81559 MiB, GPU-bbb' ;;\n"
        "  -L) echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaa)'; "
        "echo 'GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-bbb)' ;;\n"
        "  *) echo '| NVIDIA-SMI 580.82.07   Driver Version: 580.82.07   CUDA Version: 13.0 |' ;;\n"
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    path = f"{folder}:{os.environ['PATH']}"

    result = model_project.mllib(
        "train", "model.py", "--runtime", "process", env={"PATH": path, "CUDA_VISIBLE_DEVICES": "1"}
    )

    assert result.returncode == 0, result.output
    run = model_project.last_run()
    assert run["environment"]["gpus"] == [
        {"index": "1", "name": "NVIDIA H100 80GB HBM3", "driver": "580.82.07", "cuda": "13.0",
         "memory": "81559 MiB"}
    ]  # fmt: skip
    shown = model_project.mllib("runs", "show", run["id"]).stdout
    assert "gpu:       1: NVIDIA H100 80GB HBM3, driver 580.82.07, CUDA 13.0, 81559 MiB" in shown

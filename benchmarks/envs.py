"""Project environments: a cold venv build with uv against the same build with pip, side by side
(alternating rounds, so both see the same machine), for the sklearn template's dependencies;
and what the cached venv adds to a run's start.

    python benchmarks/envs.py --rounds 3        # or: bash scripts/bench.sh envs
    python benchmarks/envs.py --short --json    # the test suite's short mode

Cold: an empty venv cache and an empty installer cache (uv's cache folder fresh, pip with
--no-cache-dir), both reading the host's package sources, neither compiling bytecode (runs
write what they import, see mllib.runtime.venv: the first run of a new venv pays for what it
imports, shown by the first and second `mllib train` of the template in a new venv). Goals: uv
at least 3x faster than pip; environment resolution of a cached venv (plan + lookup + lock)
under 0.3 s of a run's start, and `mllib train --runtime venv` of the minimal template within
0.3 s of `--runtime process` (medians).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _plan(template: str, folder: Path):
    from mllib.project import Project
    from mllib.runtime.env_plan import plan_environment
    from mllib.scaffold import init_project

    root = folder / template
    init_project(root, template)
    project = Project.find(root)
    return root, plan_environment(project.root, project.config)


def cold_build(plan, installer: str, folder: Path) -> float:
    """Seconds to build `plan`'s venv from nothing with `installer` (uv or pip)."""
    from mllib.runtime.venvs import ensure_env

    cache = folder / f"envs-{installer}-{time.monotonic_ns()}"
    saved = {k: os.environ.get(k) for k in ("MLLIB_ENV_CACHE", "MLLIB_INSTALLER", "UV_CACHE_DIR",
                                             "PIP_NO_CACHE_DIR")}  # fmt: skip
    os.environ.update(
        MLLIB_ENV_CACHE=str(cache),
        MLLIB_INSTALLER=installer,
        UV_CACHE_DIR=str(cache / "uv-cache"),
        PIP_NO_CACHE_DIR="1",
    )
    try:
        start = time.perf_counter()
        env = ensure_env(plan, progress=lambda _line: None)
        elapsed = time.perf_counter() - start
        assert env.built and env.meta["installer"] == installer, env.meta
        env.release()
        return elapsed
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        subprocess.run(["rm", "-rf", str(cache)], check=False)


def cached_resolution(root: Path, reps: int) -> list[float]:
    """Seconds to plan a run's environment and find (and lock) its cached venv, `reps` times."""
    from mllib.project import Project
    from mllib.runtime.env_plan import plan_environment
    from mllib.runtime.venvs import ensure_env

    project = Project.find(root)
    ensure_env(plan_environment(project.root, project.config)).release()  # built once
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        plan = plan_environment(project.root, project.config)
        env = ensure_env(plan)
        times.append(time.perf_counter() - start)
        assert not env.built
        env.release()
    return times


def train_starts(folder: Path, reps: int) -> dict[str, float]:
    """Median seconds of `mllib train` of the minimal template, venv (cached) and process,
    alternating."""
    from mllib.scaffold import init_project

    root = folder / "starts"  # a project of its own: the build measured above may use "minimal"
    init_project(root, "minimal")
    times: dict[str, list[float]] = {"venv": [], "process": []}
    command = [sys.executable, "-m", "mllib", "train", "model.py", "--runtime"]
    subprocess.run([*command, "venv"], cwd=root, capture_output=True, check=True)  # builds it
    for _ in range(reps):
        for runtime in times:
            start = time.perf_counter()
            subprocess.run([*command, runtime], cwd=root, capture_output=True, check=True)
            times[runtime].append(time.perf_counter() - start)
    return {runtime: statistics.median(values) for runtime, values in times.items()}


def first_runs(root: Path, folder: Path) -> list[float]:
    """Seconds of the first `mllib train --runtime venv` of the project at `root` in an empty
    venv cache (the venv built from the installer's warm cache, bytecode written as imported)
    and of the second."""
    env = {**os.environ, "MLLIB_ENV_CACHE": str(folder / "envs-first-runs")}
    command = [sys.executable, "-m", "mllib", "train", "model.py", "--runtime", "venv"]
    times = []
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run(command, cwd=root, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def measure(rounds: int, reps: int, short: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="mllib-bench-envs-") as tmp:
        folder = Path(tmp)
        os.environ["MLLIB_ENV_CACHE"] = str(folder / "envs")
        template = "minimal" if short else "sklearn"
        root, plan = _plan(template, folder)
        builds: dict[str, list[float]] = {"uv": [], "pip": []}
        for _ in range(rounds):
            for installer in builds:
                builds[installer].append(cold_build(plan, installer, folder))
        medians = {name: statistics.median(values) for name, values in builds.items()}
        resolution = cached_resolution(root, reps)
        first, second = first_runs(root, folder)
        starts = train_starts(folder, max(1, reps // 4))
    speedup = medians["pip"] / medians["uv"]
    added = starts["venv"] - starts["process"]
    return {
        "template": template,
        "packages": plan.names() + sorted(set(plan.pins) - set(plan.names())),
        "cold_build_s": {name: round(value, 2) for name, value in medians.items()},
        "cold_build_rounds_s": {k: [round(v, 2) for v in vs] for k, vs in builds.items()},
        "uv_speedup": round(speedup, 2),
        "cached_resolution_s": {
            "median": round(statistics.median(resolution), 4),
            "max": round(max(resolution), 4),
        },
        "first_train_s": {"first": round(first, 2), "second": round(second, 2)},
        "train_s": {name: round(value, 3) for name, value in starts.items()},
        "train_added_by_venv_s": round(added, 3),
        "goals": {
            "uv >= 3x pip": speedup >= 3,
            "cached resolution < 0.3 s": statistics.median(resolution) < 0.3,
            "venv start within 0.3 s of process": added < 0.3,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="cold builds per installer")
    parser.add_argument("--reps", type=int, default=20, help="cached resolutions to time")
    parser.add_argument("--short", action="store_true", help="the minimal template, one round")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(1 if args.short else args.rounds, 4 if args.short else args.reps, args.short)
    if args.json:
        print(json.dumps(result))
        return
    print(f"cold venv build, {result['template']} template ({', '.join(result['packages'])}):")
    for name, value in result["cold_build_s"].items():
        print(f"  {name:<4} {value:7.2f} s   rounds: {result['cold_build_rounds_s'][name]}")
    print(f"  uv is {result['uv_speedup']}x faster than pip (goal: >= 3x)")
    res = result["cached_resolution_s"]
    print(f"cached venv: plan + lookup + lock {res['median'] * 1000:.1f} ms median, "
          f"{res['max'] * 1000:.1f} ms max (goal: < 300 ms)")  # fmt: skip
    runs = result["first_train_s"]
    print(f"mllib train, {result['template']} template, in a new venv: first {runs['first']:.2f} s "
          f"(builds it, writes bytecode), second {runs['second']:.2f} s")  # fmt: skip
    train = result["train_s"]
    print(f"mllib train, minimal template: venv {train['venv']:.3f} s, process "
          f"{train['process']:.3f} s: {result['train_added_by_venv_s']:+.3f} s (goal: < 0.3 s)")  # fmt: skip
    for goal, met in result["goals"].items():
        print(f"  {'met' if met else 'MISSED'}: {goal}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

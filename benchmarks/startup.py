"""How long `mllib --help` and `mllib runs list` take, beside the floor any typer + rich CLI pays
(`python -c "import typer, rich"`), a bare interpreter and (when given) `mlflow --help`.

python benchmarks/startup.py [--runs 20] [--mlflow /path/to/venv/bin/mlflow] [--json]

The commands are timed in turns (one of each per round, after a warm-up round), so a change in the
machine's load touches them all alike. `mllib runs list` runs in a project made for the purpose
(`mllib init`, then one training run in the process runtime).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR = 'python -c "import typer, rich"'


def time_commands(commands: dict[str, tuple[list[str], Path]], runs: int) -> dict[str, dict]:
    """Each command's wall-clock seconds (median, min) and CPU seconds (user + system, median),
    `runs` rounds after one warm-up. CPU time moves far less than wall time with the machine's load."""
    wall: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(runs + 1):
        for name, (argv, cwd) in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(argv, cwd=cwd, capture_output=True, check=True)
            elapsed = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if round_:
                wall[name].append(elapsed)
                cpu[name].append(
                    after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                )
    return {
        name: {
            "median_s": statistics.median(wall[name]),
            "min_s": min(wall[name]),
            "cpu_s": statistics.median(cpu[name]),
            "runs": runs,
        }
        for name in commands
    }


def project_with_a_run(mllib: str, where: Path) -> Path:
    """A minimal-template project holding one training run."""
    subprocess.run([mllib, "init", "proj"], cwd=where, capture_output=True, check=True)
    project = where / "proj"
    trained = subprocess.run(
        [mllib, "train", "model.py", "--runtime", "process"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    if trained.returncode != 0:
        sys.exit(f"training the benchmark's run failed:\n{trained.stdout}{trained.stderr}")
    return project


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--mlflow", help="path of an mlflow executable to compare with")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    mllib = shutil.which("mllib", path=str(Path(sys.executable).parent)) or "mllib"
    with tempfile.TemporaryDirectory(prefix="mllib-startup-") as tmp:
        here = Path(tmp)
        project = project_with_a_run(mllib, here)
        commands = {
            "python -c pass": ([sys.executable, "-c", "pass"], here),
            FLOOR: ([sys.executable, "-c", "import typer, rich"], here),
            "mllib --help": ([mllib, "--help"], here),
            "mllib runs list": ([mllib, "runs", "list"], project),
        }
        if args.mlflow:
            commands["mlflow --help"] = ([args.mlflow, "--help"], here)
        rows = time_commands(commands, args.runs)
    for name in ("mllib --help", "mllib runs list"):
        rows[name]["over_floor_s"] = rows[name]["median_s"] - rows[FLOOR]["median_s"]
        rows[name]["cpu_over_floor_s"] = rows[name]["cpu_s"] - rows[FLOOR]["cpu_s"]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{args.runs} runs each; wall: median, min, over the floor's median; CPU: median")
    print(
        f"{'command':<32} {'wall':>7} {'min':>7} {'over floor':>10} {'CPU':>7} {'over floor':>10}"
    )
    for name, row in rows.items():
        ms = {key: f"{value * 1000:.0f}ms" for key, value in row.items() if key.endswith("_s")}
        for key in ("over_floor_s", "cpu_over_floor_s"):
            ms[key] = (
                f"+{ms[key]}" if key in ms and not ms[key].startswith("-") else ms.get(key, "")
            )
        print(
            f"{name:<32} {ms['median_s']:>7} {ms['min_s']:>7} {ms['over_floor_s']:>10} "
            f"{ms['cpu_s']:>7} {ms['cpu_over_floor_s']:>10}"
        )


if __name__ == "__main__":
    main()

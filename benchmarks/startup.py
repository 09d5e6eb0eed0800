"""How long `mllib --help` takes, beside a bare interpreter and (when given) `mlflow --help`.

python benchmarks/startup.py [--runs 20] [--mlflow /path/to/venv/bin/mlflow] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def time_command(argv: list[str], runs: int) -> dict[str, float]:
    """Wall-clock seconds of `runs` executions after one warm-up: median and min."""
    subprocess.run(argv, capture_output=True, check=True)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        samples.append(time.perf_counter() - start)
    return {"median_s": statistics.median(samples), "min_s": min(samples), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--mlflow", help="path of an mlflow executable to compare with")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    mllib = shutil.which("mllib", path=str(Path(sys.executable).parent)) or "mllib"
    rows = {
        "python -c pass": time_command([sys.executable, "-c", "pass"], args.runs),
        "mllib --help": time_command([mllib, "--help"], args.runs),
    }
    if args.mlflow:
        rows["mlflow --help"] = time_command([args.mlflow, "--help"], args.runs)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'command':<18} {'median':>9} {'min':>9}   ({args.runs} runs each)")
    for name, row in rows.items():
        print(f"{name:<18} {row['median_s'] * 1000:>7.0f}ms {row['min_s'] * 1000:>7.0f}ms")


if __name__ == "__main__":
    main()

"""What the Docker runtime adds to a run: `mllib train` of the minimal template with its image
already built, against a plain `docker run` of `python -c pass` on the same image, side by side
(alternating, so both see the same machine). `mllib train --runtime process` is shown too.

    python benchmarks/docker_overhead.py --reps 15        # or: bash scripts/bench.sh docker

Goal: the median of `mllib train` (docker) at most 1 s above the median of `docker run`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCKER_CLI = "/usr/bin/docker"  # Debian's client; another `docker` on PATH may be a different one


def _timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return elapsed


def measure(reps: int, repository: str | None = None, folder: Path | None = None) -> dict:
    """Medians (seconds) of each command over `reps` alternating rounds, and the docker overhead."""
    from mllib.runtime.images import build_project_image
    from mllib.scaffold import init_project

    with tempfile.TemporaryDirectory(prefix="mllib-bench-", dir=folder) as tmp:
        project = Path(tmp) / "minimal"
        init_project(project, "minimal")
        if repository:
            toml = project / "mllib.toml"
            toml.write_text(toml.read_text() + f'\n[runtime]\nimage_repository = "{repository}"\n')
        image = build_project_image(project)  # the cached image both sides use
        mllib = [sys.executable, "-m", "mllib", "train", "model.py"]
        commands = {
            "docker run python -c pass": [
                DOCKER_CLI, "run", "--rm", "--network", "host", image, "python", "-c", "pass"
            ],
            "mllib train (docker)": [*mllib, "--runtime", "docker"],
            "mllib train (process)": [*mllib, "--runtime", "process"],
        }  # fmt: skip
        _timed(commands["mllib train (docker)"], project)  # warm the page cache once
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(reps):
            for name, command in commands.items():
                times[name].append(_timed(command, project))
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "reps": reps,
        "image": image,
        "median_s": medians,
        "docker_added_s": medians["mllib train (docker)"] - medians["docker run python -c pass"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15, help="rounds of each command")
    parser.add_argument("--image-repository", help="where the project image is tagged")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = measure(args.reps, args.image_repository)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.reps} rounds, image {result['image']} (cached), medians:")
    for name, value in result["median_s"].items():
        print(f"  {name:<28} {value:6.3f} s")
    verdict = "within" if result["docker_added_s"] <= 1.0 else "OVER"
    print(
        f"  docker runtime adds {result['docker_added_s']:.3f} s to docker run ({verdict} the 1 s goal)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

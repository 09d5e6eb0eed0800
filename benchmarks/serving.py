"""Serving throughput and latency with wrk, side by side in one run: mllib's prod path (API key
check + shared rate limit + metrics + JSON logs), a bare LitServe server with the same worker
count serving the same predict, and (with --mlflow) `mlflow models serve` of the same model.

python benchmarks/serving.py [--duration 10] [--workers 1] [--mlflow .venv-bench/bin/mlflow] [--json]
Needs wrk (apt-get install wrk). The model is the sklearn template's LogisticRegression.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
FEATURES = [
    0.1,
    -0.2,
    0.3,
    0.5,
    -1.0,
    0.7,
    0.2,
    0.1,
    -0.4,
    0.9,
    0.0,
    0.3,
    -0.1,
    0.6,
    0.8,
    -0.7,
    0.2,
    0.4,
    -0.3,
    0.5,
]
MLLIB_BODY = json.dumps({"features": FEATURES})
MLFLOW_BODY = json.dumps({"inputs": [FEATURES]})  # a tensor: MLflow's cheapest input path
MLFLOW_DF_BODY = json.dumps(
    {"dataframe_split": {"data": [FEATURES]}}
)  # its documented tabular form
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url: str, body: str, *, connections: int, duration: float, key: str | None = None) -> dict:
    """Run wrk against POST url; req/s, p50/p99 (ms), and how many answers were not 2xx."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    lua = "wrk.method = 'POST'\nwrk.body = [==[" + body + "]==]\n"
    lua += "".join(f"wrk.headers['{k}'] = '{v}'\n" for k, v in headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{max(1, round(duration))}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)

    def ms(pct: str) -> float:
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * UNITS[unit]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
        "connections": connections,
    }


def wait_until_up(
    url: str, proc: subprocess.Popen | None, body: str, key: str | None, timeout: float = 120
) -> None:
    headers = {
        "content-type": "application/json",
        **({"authorization": f"Bearer {key}"} if key else {}),
    }
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            if httpx.post(url, content=body, headers=headers, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")


@contextmanager
def background(argv: list[str], log: Path, **kwargs) -> Iterator[subprocess.Popen]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mllib_cli(*args: str, cwd: Path) -> str:
    return subprocess.run(
        [sys.executable, "-m", "mllib", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


def median_row(rows: list[dict]) -> dict:
    """The round with the median req/s, plus every round's req/s."""
    ordered = sorted(rows, key=lambda r: r["rps"])
    return {**ordered[len(ordered) // 2], "rounds_rps": [r["rps"] for r in rows]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument(
        "--rounds", type=int, default=3, help="measurements per server, interleaved"
    )
    parser.add_argument("--workers", type=int, default=1, help="inference workers, on both servers")
    parser.add_argument(
        "--mlflow",
        action="append",
        default=[],
        help="path of an mlflow executable (its venv has mlflow + sklearn); may be repeated",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="mllib-bench-serve-"))
    results: dict = {
        "duration_s": args.duration,
        "rounds": args.rounds,
        "workers": args.workers,
        "cpus": os.cpu_count(),
    }
    say = (lambda *a, **k: None) if args.json else print
    try:
        with ExitStack() as stack:
            targets = start_servers(stack, tmp, args)
            results["load_before"] = [round(x, 2) for x in os.getloadavg()]
            say(
                f"sklearn LogisticRegression, {args.workers} worker(s); wrk {args.duration:g}s per row,"
                f" median of {args.rounds} interleaved rounds; {os.cpu_count()} CPUs,"
                f" load average {results['load_before'][0]:.2f} at the start"
            )
            plan = [(name, 8) for name in targets] + [("bare_litserve", 64), ("mllib_prod", 64)]
            rows: dict[tuple[str, int], list[dict]] = {step: [] for step in plan}
            for url, body, key in targets.values():  # warm-up
                wrk(url, body, connections=8, duration=min(2, args.duration), key=key)
            for round_ in range(args.rounds):
                for name, connections in plan[round_ % len(plan) :] + plan[: round_ % len(plan)]:
                    url, body, key = targets[name]
                    rows[(name, connections)].append(
                        wrk(url, body, connections=connections, duration=args.duration, key=key)
                    )
            for (name, connections), measured in rows.items():
                row = median_row(measured)
                results.setdefault(name, {})[f"c{connections}"] = row
                say(
                    f"  {LABELS[name]:<28} c={connections:<3} {row['rps']:>8,.0f} req/s"
                    f"  p50 {row['p50_ms']:6.2f}ms  p99 {row['p99_ms']:7.2f}ms  non-2xx {row['non_2xx']}"
                    f"  (rounds: {', '.join(f'{r:,.0f}' for r in row['rounds_rps'])})"
                )
            results["mllib_prod"]["log_lines"] = sum(1 for _ in open(targets.log_path, "rb"))  # noqa: SIM115
        results["load_after"] = [round(x, 2) for x in os.getloadavg()]
        mine = results["mllib_prod"]["c8"]["rps"]
        for name in targets.names:
            if name != "mllib_prod":
                results[f"ratio_vs_{name}"] = round(mine / results[name]["c8"]["rps"], 2)
        if args.json:
            print(json.dumps(results, indent=2))
            return
        for name in targets.names:
            if name != "mllib_prod":
                print(
                    f"mllib prod path / {LABELS[name].strip()} at c=8: {results[f'ratio_vs_{name}']:.2f}x"
                )
        print(f"mllib prod path p99 at c=64: {results['mllib_prod']['c64']['p99_ms']:.1f}ms")
        print(
            f"load average at the end: {results['load_after'][0]:.2f} (other work on the machine)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


LABELS = {"bare_litserve": "bare LitServe", "mllib_prod": "mllib prod path"}


class Targets(dict):
    """name -> (url, body, key), in the order measured."""

    log_path: str = ""

    @property
    def names(self) -> list[str]:
        return list(self)


def start_servers(stack: ExitStack, tmp: Path, args) -> Targets:
    """The bare LitServe server, mllib's prod deployment and (with --mlflow) mlflow, all up."""
    targets = Targets()
    project = tmp / "proj"
    mllib_cli("init", str(project), "--template", "sklearn", cwd=tmp)
    (project / "mllib.toml").write_text(
        (project / "mllib.toml").read_text()
        + f"\n[deploy]\nworkers = {args.workers}\napi_servers = {args.workers}\n"
    )
    mllib_cli("train", "model.py", cwd=project)
    from mllib.serving import keys
    from mllib.serving.deploy import DeployContext, deploy, stop
    from mllib.serving.servable import materialize, resolve
    from mllib.workspace import Workspace

    ctx = DeployContext.create(Workspace.find(project))
    servable = resolve(ctx.ws, "classifier")
    bundle = materialize(ctx.ws, servable)

    port = free_port()
    argv = [sys.executable, str(ROOT / "benchmarks" / "bare_litserve.py"), str(bundle)]
    argv += [servable.model_file, servable.model_class, str(port), str(args.workers)]
    proc = stack.enter_context(background(argv, tmp / "bare.log", cwd=project))
    targets["bare_litserve"] = (f"http://127.0.0.1:{port}/predict", MLLIB_BODY, None)
    wait_until_up(targets["bare_litserve"][0], proc, MLLIB_BODY, None)

    dep = deploy(ctx, "classifier", "prod", force=True, reason="benchmark").deployment
    stack.callback(stop, ctx, "prod")
    key = keys.create_key(
        ctx.ws.registry, ctx.clock, ctx.settings.keys, env="prod", user=ctx.user, rps=1e9, burst=1e9
    ).token
    targets["mllib_prod"] = (f"{dep.url}/predict", MLLIB_BODY, key)
    targets.log_path = dep.log_path
    wait_until_up(targets["mllib_prod"][0], None, MLLIB_BODY, key)

    for mlflow in args.mlflow:
        python = str(Path(mlflow).parent / "python")
        version = subprocess.run(
            [python, "-c", "import mlflow; print(mlflow.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        model_dir = tmp / f"mlflow-model-{version}"
        script = str(ROOT / "benchmarks" / "mlflow_model.py")
        subprocess.run([python, script, str(model_dir)], check=True, capture_output=True)
        port = free_port()
        argv = [mlflow, "models", "serve", "-m", str(model_dir), "-p", str(port)]
        argv += ["--env-manager", "local", "-w", str(args.workers)]
        bin_dir = str(Path(mlflow).parent)  # mlflow starts uvicorn or gunicorn from PATH
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
        proc = stack.enter_context(background(argv, tmp / f"mlflow-{version}.log", env=env))
        url = f"http://127.0.0.1:{port}/invocations"
        wait_until_up(url, proc, MLFLOW_BODY, None, timeout=180)
        name = f"mlflow_{version}"
        targets[name] = (url, MLFLOW_BODY, None)
        targets[f"{name}_dataframe"] = (url, MLFLOW_DF_BODY, None)
        LABELS[name] = f"mlflow {version} (inputs)"
        LABELS[f"{name}_dataframe"] = f"mlflow {version} (dataframe)"
    return targets


if __name__ == "__main__":
    main()

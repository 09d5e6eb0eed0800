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
from contextlib import contextmanager
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


def measure(
    name: str, url: str, body: str, args, key: str | None = None, concurrencies=(8,)
) -> dict:
    wrk(url, body, connections=8, duration=min(2, args.duration), key=key)  # warm-up
    result = {
        f"c{c}": wrk(url, body, connections=c, duration=args.duration, key=key)
        for c in concurrencies
    }
    if not args.json:
        for c, row in result.items():
            print(
                f"  {name:<22} {c:>4}  {row['rps']:>9,.0f} req/s  p50 {row['p50_ms']:6.2f}ms  p99 {row['p99_ms']:7.2f}ms  non-2xx {row['non_2xx']}",
                flush=True,
            )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=1, help="inference workers, on both servers")
    parser.add_argument(
        "--mlflow", help="path of an mlflow executable (its venv has mlflow + sklearn)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="mllib-bench-serve-"))
    results: dict = {"duration_s": args.duration, "workers": args.workers, "cpus": os.cpu_count()}
    try:
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
        if not args.json:
            print(
                f"sklearn LogisticRegression, {args.workers} worker(s), wrk {args.duration:g}s per row, {os.cpu_count()} CPUs"
            )

        port = free_port()
        argv = [
            sys.executable,
            str(ROOT / "benchmarks" / "bare_litserve.py"),
            str(bundle),
            servable.model_file,
            servable.model_class,
            str(port),
            str(args.workers),
        ]
        with background(argv, tmp / "bare.log", cwd=project) as proc:
            url = f"http://127.0.0.1:{port}/predict"
            wait_until_up(url, proc, MLLIB_BODY, None)
            results["bare_litserve"] = measure(
                "bare LitServe", url, MLLIB_BODY, args, concurrencies=(8, 64)
            )

        dep = deploy(ctx, "classifier", "prod", force=True, reason="benchmark").deployment
        try:
            key = keys.create_key(
                ctx.ws.registry,
                ctx.clock,
                ctx.settings.keys,
                env="prod",
                user=ctx.user,
                rps=1e9,
                burst=1e9,
            ).token
            url = f"{dep.url}/predict"
            wait_until_up(url, None, MLLIB_BODY, key)
            results["mllib_prod"] = measure(
                "mllib prod path", url, MLLIB_BODY, args, key=key, concurrencies=(8, 64)
            )
            with open(dep.log_path, "rb") as log:
                results["mllib_prod"]["log_lines"] = sum(1 for _ in log)
        finally:
            stop(ctx, "prod")

        if args.mlflow:
            model_dir = tmp / "mlflow-model"
            python = str(Path(args.mlflow).parent / "python")
            subprocess.run(
                [python, str(ROOT / "benchmarks" / "mlflow_model.py"), str(model_dir)],
                check=True,
                capture_output=True,
            )
            port = free_port()
            argv = [
                args.mlflow,
                "models",
                "serve",
                "-m",
                str(model_dir),
                "-p",
                str(port),
                "--env-manager",
                "local",
                "-w",
                str(args.workers),
            ]
            bin_dir = str(Path(args.mlflow).parent)  # mlflow starts `uvicorn` from PATH
            env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
            with background(argv, tmp / "mlflow.log", env=env) as proc:
                url = f"http://127.0.0.1:{port}/invocations"
                wait_until_up(url, proc, MLFLOW_BODY, None, timeout=180)
                results["mlflow"] = measure("mlflow models serve", url, MLFLOW_BODY, args)
                results["mlflow_dataframe"] = measure(
                    "  (dataframe_split)", url, MLFLOW_DF_BODY, args
                )

        mine, bare = results["mllib_prod"]["c8"]["rps"], results["bare_litserve"]["c8"]["rps"]
        results["ratio_vs_bare_litserve"] = round(mine / bare, 2)
        if "mlflow" in results:
            results["ratio_vs_mlflow"] = round(mine / results["mlflow"]["c8"]["rps"], 2)
            results["ratio_vs_mlflow_dataframe"] = round(
                mine / results["mlflow_dataframe"]["c8"]["rps"], 2
            )
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            print(
                f"mllib prod path / bare LitServe at c=8: {results['ratio_vs_bare_litserve']:.2f}x"
            )
            if "ratio_vs_mlflow" in results:
                print(
                    f"mllib prod path / mlflow models serve at c=8: {results['ratio_vs_mlflow']:.2f}x"
                    f" (inputs), {results['ratio_vs_mlflow_dataframe']:.2f}x (dataframe_split)"
                )
            print(f"mllib prod path p99 at c=64: {results['mllib_prod']['c64']['p99_ms']:.1f}ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

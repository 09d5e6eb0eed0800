"""Serving throughput and latency with wrk, side by side in one run: mllib's prod path (API key
check + shared rate limit + metrics + JSON logs) in both inference modes, a bare LitServe server
serving the same predict, and (with --mlflow) `mlflow models serve` of the same model, at equal
process counts.

python benchmarks/serving.py [--duration 8] [--rounds 3] [--processes 1,2]
                             [--mlflow .venv-bench/bin/mlflow] [--baseline-src DIR ...] [--json]

Rows, for each process count P in --processes:
  mllib inline, P     P HTTP processes that each hold the model and predict (the default mode)
  mlflow, P           `mlflow models serve -w P`, with its `inputs` and `dataframe_split` payloads
and once:
  mllib worker, 1+1   one API server handing requests to one LitServe worker (the former default)
  bare LitServe, 1+1  LitServe's defaults: one API server, one worker, its Manager process
With --baseline-src DIR (another checkout's source, e.g. `git archive main`; may be repeated),
its mllib prod path rows too (deployed through its own CLI, same venv), to compare a change with
main in one run. Each is measured at concurrency 8 (payload rows: both MLflow formats) and 64, in interleaved
rounds; the median round is reported. Needs wrk (apt-get install wrk). The model is the sklearn
template's LogisticRegression (20 features).
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
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
FEATURES = [0.1, -0.2, 0.3, 0.5, -1.0, 0.7, 0.2, 0.1, -0.4, 0.9,
            0.0, 0.3, -0.1, 0.6, 0.8, -0.7, 0.2, 0.4, -0.3, 0.5]  # fmt: skip
MLLIB_BODY = json.dumps({"features": FEATURES})
MLFLOW_BODY = json.dumps({"inputs": [FEATURES]})  # a tensor: MLflow's cheapest input path
MLFLOW_DF_BODY = json.dumps({"dataframe_split": {"data": [FEATURES]}})  # its tabular form
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass
class Target:
    """One server and payload to measure."""

    label: str
    url: str
    body: str
    processes: int  # processes serving it (not counting a supervisor that only waits)
    pgid: int  # its process group: CPU time is summed over it
    key: str | None = None
    log_path: str | None = None
    c64: bool = True  # also measured at concurrency 64
    baseline_for: str | None = None  # --baseline-src: the name of this checkout's same row


def cpu_seconds(pgid: int) -> float:
    """User + system CPU time of the processes in group `pgid` so far."""
    import psutil

    total = 0.0
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                times = proc.cpu_times()
                total += times.user + times.system
        except (psutil.Error, ProcessLookupError):
            continue
    return total


def wrk(target: Target, *, connections: int, duration: float) -> dict:
    """Run wrk against POST url; req/s, p50/p99 (ms), how many answers were not 2xx, and the
    server's CPU time per request (steadier than req/s on a machine shared with other work)."""
    headers = {"Content-Type": "application/json"}
    if target.key:
        headers["Authorization"] = f"Bearer {target.key}"
    lua = "wrk.method = 'POST'\nwrk.body = [==[" + target.body + "]==]\n"
    lua += "".join(f"wrk.headers['{k}'] = '{v}'\n" for k, v in headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
    try:
        cpu_before = cpu_seconds(target.pgid)
        out = subprocess.run(
            [*argv, "-s", script.name, target.url], capture_output=True, text=True, check=True
        ).stdout
        cpu = cpu_seconds(target.pgid) - cpu_before
    finally:
        os.unlink(script.name)

    def ms(pct: str) -> float:
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * UNITS[unit]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "cpu_us_per_request": round(cpu / max(1, requests) * 1e6, 1),
        "requests": requests,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
        "connections": connections,
    }


def wait_until_up(target: Target, proc: subprocess.Popen | None, timeout: float = 120) -> None:
    headers = {"content-type": "application/json"}
    if target.key:
        headers["authorization"] = f"Bearer {target.key}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{target.url}: the server exited with {proc.returncode}")
        try:
            if httpx.post(target.url, content=target.body, headers=headers, timeout=5).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{target.url} did not answer 200 within {timeout}s")


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
    """The round with the median req/s, plus every round's req/s; CPU per request is the median
    over the rounds on its own."""
    import statistics

    ordered = sorted(rows, key=lambda r: r["rps"])
    return {
        **ordered[len(ordered) // 2],
        "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in rows),
        "rounds_rps": [r["rps"] for r in rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per row, interleaved")
    parser.add_argument(
        "--processes",
        default="1,2",
        help="process counts to compare mllib inline and mlflow at (comma-separated)",
    )
    parser.add_argument(
        "--mlflow",
        action="append",
        default=[],
        help="path of an mlflow executable (its venv has mlflow + sklearn); may be repeated,"
        " e.g. once from a venv where uvicorn[standard] is installed too",
    )
    parser.add_argument(
        "--baseline-src",
        metavar="DIR",
        action="append",
        default=[],
        help="also measure the mllib prod path of the checkout in DIR (its source tree, run with"
        " this venv) in the same interleaved rounds, e.g. main beside a change",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.processes = [int(p) for p in args.processes.split(",")]
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="mllib-bench-serve-"))
    results: dict = {"duration_s": args.duration, "rounds": args.rounds, "cpus": os.cpu_count()}
    say = (lambda *a, **k: None) if args.json else print
    try:
        with ExitStack() as stack:
            targets = start_servers(stack, tmp, args)
            results["load_before"] = [round(x, 2) for x in os.getloadavg()]
            say(
                f"sklearn LogisticRegression; wrk {args.duration:g}s per row, median of"
                f" {args.rounds} interleaved rounds; {os.cpu_count()} CPUs, load average"
                f" {results['load_before'][0]:.2f} at the start"
            )
            measured = measure(targets, args)
            for name, target in targets.items():
                for connections in (8, 64):
                    if (name, connections) not in measured:
                        continue
                    row = median_row(measured[(name, connections)])
                    results.setdefault(name, {"label": target.label})[f"c{connections}"] = row
                    say(
                        f"  {target.label:<46} c={connections:<3} {row['rps']:>7,.0f} req/s"
                        f"  p50 {row['p50_ms']:6.2f}ms  p99 {row['p99_ms']:7.2f}ms"
                        f"  {row['cpu_us_per_request']:5.0f}us CPU/req  non-2xx {row['non_2xx']}"
                        f"  (rounds: {', '.join(f'{r:,.0f}' for r in row['rounds_rps'])})"
                    )
                if target.log_path:
                    with open(target.log_path, "rb") as log:
                        results[name]["log_lines"] = sum(1 for _ in log)
        results["load_after"] = [round(x, 2) for x in os.getloadavg()]
        results["ratios"] = ratios(results, targets, args.processes)
        if args.json:
            print(json.dumps(results, indent=2))
            return
        for label, value in results["ratios"].items():
            print(f"{label}: {value:.2f}x")
        for name in targets:
            if name.startswith("mllib"):
                print(f"{targets[name].label} p99 at c=64: {results[name]['c64']['p99_ms']:.1f}ms")
        print(f"load average at the end: {results['load_after'][0]:.2f} (other work here)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(targets: dict[str, Target], args) -> dict[tuple[str, int], list[dict]]:
    """Every (target, concurrency) row, `args.rounds` times, each round in a rotated order."""
    plan = [(name, 8) for name in targets]
    plan += [(name, 64) for name, target in targets.items() if target.c64]
    rows: dict[tuple[str, int], list[dict]] = {step: [] for step in plan}
    for target in targets.values():  # warm-up
        wrk(target, connections=8, duration=min(2, args.duration))
    for round_ in range(args.rounds):
        shift = round_ * len(plan) // max(1, args.rounds)
        for name, connections in plan[shift:] + plan[:shift]:
            rows[(name, connections)].append(
                wrk(targets[name], connections=connections, duration=args.duration)
            )
    return rows


def ratios(results: dict, targets: dict[str, Target], processes: list[int]) -> dict[str, float]:
    """The comparisons the goals are stated in, at c=8 and equal process counts."""

    def rps(name: str) -> float:
        return results[name]["c8"]["rps"]

    out = {}
    for p in processes:
        inline = f"mllib_inline_{p}"
        for name, target in targets.items():
            if name.startswith("mlflow") and target.processes == p:
                out[f"{targets[inline].label} / {target.label}"] = rps(inline) / rps(name)
    out[f"{targets['mllib_inline_1'].label} / {targets['bare_litserve'].label}"] = rps(
        "mllib_inline_1"
    ) / rps("bare_litserve")
    out[f"{targets['mllib_worker'].label} / {targets['bare_litserve'].label}"] = rps(
        "mllib_worker"
    ) / rps("bare_litserve")
    out[f"{targets['mllib_inline_1'].label} / {targets['mllib_worker'].label}"] = rps(
        "mllib_inline_1"
    ) / rps("mllib_worker")
    for name, target in targets.items():  # this checkout / a baseline checkout, c=8 and c=64
        if target.baseline_for:
            ours = target.baseline_for
            for c in ("c8", "c64"):
                label = f"{targets[ours].label} / {target.label}, {c.replace('c', 'c=')}"
                out[label] = results[ours][c]["rps"] / results[name][c]["rps"]
    return {label: round(value, 2) for label, value in out.items()}


def start_servers(stack: ExitStack, tmp: Path, args) -> dict[str, Target]:
    """Every server of the comparison, started and answering."""
    targets: dict[str, Target] = {}
    template = tmp / "proj"
    mllib_cli("init", str(template), "--template", "sklearn", cwd=tmp)
    mllib_cli("train", "model.py", cwd=template)

    for p in args.processes:
        targets[f"mllib_inline_{p}"] = deploy_prod(stack, template, tmp, "inline", p)
    targets["mllib_worker"] = deploy_prod(stack, template, tmp, "worker", 1)
    for src in map(Path, args.baseline_src):
        for name in [n for n in targets if n.startswith("mllib_")]:
            inference, workers = (
                ("worker", 1) if name == "mllib_worker" else ("inline", targets[name].processes)
            )
            baseline = deploy_prod_from(src, template, tmp, inference, workers, stack)
            baseline.baseline_for = name
            targets[f"baseline_{src.name}_{name}"] = baseline

    from mllib.serving.control.servable import materialize, resolve
    from mllib.workspace import Workspace

    ws = Workspace.find(template)
    servable = resolve(ws, "classifier")
    port = free_port()
    argv = [sys.executable, str(ROOT / "benchmarks" / "bare_litserve.py")]
    argv += [str(materialize(ws, servable)), servable.model_file, servable.model_class]
    argv += [str(port), "1"]
    proc = stack.enter_context(background(argv, tmp / "bare.log", cwd=template))
    url = f"http://127.0.0.1:{port}/predict"
    bare = Target("bare LitServe, 1+1 processes", url, MLLIB_BODY, 2, proc.pid)
    wait_until_up(bare, proc)
    targets["bare_litserve"] = bare

    for mlflow in args.mlflow:
        for p in args.processes:
            targets.update(start_mlflow(stack, tmp, mlflow, p))
    return targets


def deploy_prod(
    stack: ExitStack, template: Path, tmp: Path, inference: str, workers: int
) -> Target:
    """A prod deployment of the trained template (its own copy of the project) and a key."""
    from mllib.serving.control import keys
    from mllib.serving.control.deploy import DeployContext, deploy, stop
    from mllib.workspace import Workspace

    project = tmp / f"proj-{inference}-{workers}"
    shutil.copytree(template, project)
    config = project / "mllib.toml"
    config.write_text(
        config.read_text()
        + f'\n[deploy]\ninference = "{inference}"\nworkers = {workers}\napi_servers = 1\n'
    )
    ctx = DeployContext.create(Workspace.find(project))
    dep = deploy(ctx, "classifier", "prod", force=True, reason="benchmark").deployment
    stack.callback(stop, ctx, "prod")
    key = keys.create_key(
        ctx.ws.registry, ctx.clock, ctx.settings.keys, env="prod", user=ctx.user, rps=1e9, burst=1e9
    ).token
    if inference == "inline":
        label, processes = f"mllib prod, inline, {workers} process(es)", workers
    else:
        label, processes = f"mllib prod, worker, {workers}+1 processes", workers + 1
    target = Target(label, f"{dep.url}/predict", MLLIB_BODY, processes, dep.pid, key, dep.log_path)
    wait_until_up(target, None)
    return target


def deploy_prod_from(
    src: Path, template: Path, tmp: Path, inference: str, workers: int, stack: ExitStack
) -> Target:
    """deploy_prod, by the mllib whose source is `src` (its CLI, with this venv's packages)."""
    project = tmp / f"baseline-{src.name}-{inference}-{workers}"
    shutil.copytree(template, project)
    config = project / "mllib.toml"
    config.write_text(
        config.read_text()
        + f'\n[deploy]\ninference = "{inference}"\nworkers = {workers}\napi_servers = 1\n'
    )
    env = {**os.environ, "PYTHONPATH": str(src.resolve())}

    def cli(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "mllib", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    cli("deploy", "classifier", "--env", "prod", "--force", "--reason", "benchmark")
    stack.callback(cli, "deploy", "stop", "--env", "prod")
    key = cli("keys", "create", "--env", "prod", "--rps", "1e9", "--burst", "1e9").strip()
    dep = json.loads(cli("deploy", "status", "--env", "prod", "--json", "--window", "0.1"))[0]
    if inference == "inline":
        label, processes = f"mllib prod ({src.name}), inline, {workers} process(es)", workers
    else:
        label, processes = f"mllib prod ({src.name}), worker, {workers}+1 processes", workers + 1
    url = f"{dep['url']}/predict"
    target = Target(label, url, MLLIB_BODY, processes, dep["pid"], key, dep["log_path"])
    wait_until_up(target, None)
    return target


def start_mlflow(stack: ExitStack, tmp: Path, mlflow: str, workers: int) -> dict[str, Target]:
    """`mlflow models serve -w WORKERS` of the same model, with both of its payload formats."""
    python = str(Path(mlflow).parent / "python")
    probe = (
        "import mlflow, importlib.util as u; print(mlflow.__version__, bool(u.find_spec('uvloop')))"
    )
    version, uvloop = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    model_dir = tmp / f"mlflow-model-{version}{uvloop}"
    if not model_dir.exists():
        script = str(ROOT / "benchmarks" / "mlflow_model.py")
        subprocess.run([python, script, str(model_dir)], check=True, capture_output=True)
    port = free_port()
    argv = [mlflow, "models", "serve", "-m", str(model_dir), "-p", str(port)]
    argv += ["--env-manager", "local", "-w", str(workers)]
    bin_dir = str(Path(mlflow).parent)  # mlflow starts uvicorn or gunicorn from PATH
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    # pip install mlflow brings plain uvicorn (asyncio, h11); with uvicorn[standard] installed
    # beside it, uvicorn picks uvloop and httptools, as mllib's servers do.
    flavour = "_std" if uvloop == "True" else ""
    log = tmp / f"mlflow-{version}{flavour}-{workers}.log"
    proc = stack.enter_context(background(argv, log, env=env))
    url = f"http://127.0.0.1:{port}/invocations"
    name = f"mlflow_{version}{flavour}_{workers}"
    label = f"mlflow {version}{' +uvloop' if flavour else ''} -w {workers}"
    inputs = Target(f"{label}, inputs", url, MLFLOW_BODY, workers, proc.pid)
    frame = Target(f"{label}, dataframe", url, MLFLOW_DF_BODY, workers, proc.pid, c64=False)
    wait_until_up(inputs, proc, timeout=180)
    return {name: inputs, f"{name}_dataframe": frame}


if __name__ == "__main__":
    main()

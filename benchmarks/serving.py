"""Serving throughput and latency with wrk, side by side in one run: mllib's prod path (API key
check + shared rate limit + metrics + JSON logs) at its defaults and at fixed process counts, a
bare LitServe server serving the same predict, and the peers at their best on the same model:
`mlflow models serve` (--mlflow), Ray Serve in its high-throughput mode (--ray) and BentoML with
adaptive batching and a worker per core (--bentoml).

python benchmarks/serving.py [--duration 8] [--rounds 3] [--processes 1,2]
                             [--mlflow .venv-bench/bin/mlflow] [--ray .venv-bench/bin/python]
                             [--bentoml .venv-bench-bento/bin/bentoml]
                             [--baseline-src DIR ...] [--only loadtest] [--json]

Rows:
  mllib defaults      `mllib deploy` with nothing set: inline, 1 replica scaled by its
                      controller up to one per core; also with the model's predict_batch removed
                      (a plain predict() per request)
  mllib inline, P     P replicas (min = max = P) for each P in --processes
  mlflow, P           `mlflow models serve -w P`, with its `inputs` and `dataframe_split` payloads
  mllib worker, 1+1   one API server handing requests to one LitServe worker (the former default)
  bare LitServe, 1+1  LitServe's defaults: one API server, one worker, its Manager process
  Ray Serve           2.60, RAY_SERVE_THROUGHPUT_OPTIMIZED=1 + HAProxy, one replica per core,
                      @serve.batch (benchmarks/ray_serve_model.py)
  BentoML             1.4, batchable API, workers="cpu_count" (benchmarks/bentoml_model.py)
and `mllib loadtest`'s load engine beside wrk on the mllib defaults row, at 8 and 64 connections,
with each client's own CPU per request (`--only loadtest`: just these, the engine also with 1 and
2 processes).
With --baseline-src DIR (another checkout's source, e.g. `git archive main`; may be repeated),
its mllib prod path rows too (deployed through its own CLI, same venv), to compare a change with
main in one run. Each is measured at concurrency 8 (payload rows: both MLflow formats) and 64, in interleaved
rounds; the median round is reported. Needs wrk (apt-get install wrk). The model is the sklearn
template's LogisticRegression (20 features).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import resource
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
    engine: str = "wrk"  # what sends the load: wrk, or mllib loadtest's engine ("loadgen")
    load_workers: int | None = None  # loadgen's processes (None: its default)


def cpu_seconds(pgid: int) -> float:
    """User + system CPU time so far of the processes in group `pgid` and of all their
    descendants (a deployment's controller starts its servers in groups of their own; BentoML
    and Ray start workers and replicas in theirs)."""
    import psutil

    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                found[proc.pid] = proc
                found.update((child.pid, child) for child in proc.children(recursive=True))
        except (psutil.Error, ProcessLookupError):
            continue
    total = 0.0
    for proc in found.values():
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def loadgen(target: Target, *, connections: int, duration: float) -> dict:
    """Send the load with `mllib loadtest`'s engine (its processes, keep-alive connections) the
    way wrk does (closed model, `connections` in flight); the same figures as wrk()."""
    from mllib.serving.control import loadgen as engine
    from mllib.serving.control.loadtest import percentile

    headers = {"Authorization": f"Bearer {target.key}"} if target.key else {}
    load = engine.Load(
        url=target.url.removesuffix("/predict"),
        body=target.body.encode(),
        headers=headers,
        duration_s=duration,
        concurrency=connections,
        rate_from=0.0,
        rate_to=0.0,
        max_in_flight=connections,
        timeout_s=30.0,
    )
    cpu_before = cpu_seconds(target.pgid)
    generated = engine.run(load, workers=target.load_workers)
    tally = generated.tally
    cpu = cpu_seconds(target.pgid) - cpu_before
    latencies = sorted(tally.latencies)
    return {
        "rps": len(latencies) / tally.wall_s,
        "p50_ms": (percentile(latencies, 0.50) or 0.0) * 1000,
        "p99_ms": (percentile(latencies, 0.99) or 0.0) * 1000,
        "cpu_us_per_request": round(cpu / max(1, len(latencies)) * 1e6, 1),
        "client_cpu_us_per_request": round(tally.cpu_s / max(1, len(latencies)) * 1e6, 1),
        "load_workers": generated.workers,
        "requests": tally.requests,
        "non_2xx": tally.errors,
        "socket_errors": sum(v for k, v in tally.statuses.items() if k.startswith("error:")),
        "connections": connections,
    }


def wrk(target: Target, *, connections: int, duration: float) -> dict:
    """Run wrk against POST url; req/s, p50/p99 (ms), how many answers were not 2xx, and the
    server's CPU time per request (steadier than req/s on a machine shared with other work) and
    wrk's own (from its rusage: on 2 cores, a client's CPU is taken from the server)."""
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
        client_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(
            [*argv, "-s", script.name, target.url], capture_output=True, text=True, check=True
        ).stdout
        client = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = cpu_seconds(target.pgid) - cpu_before
        client_cpu = (client.ru_utime - client_before.ru_utime) + (
            client.ru_stime - client_before.ru_stime
        )
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
        "client_cpu_us_per_request": round(client_cpu / max(1, requests) * 1e6, 1),
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
    parser.add_argument(
        "--ray", metavar="PYTHON", help="a python whose venv has ray[serve] and scikit-learn"
    )
    parser.add_argument(
        "--bentoml", metavar="BENTOML", help="a bentoml executable (its venv has scikit-learn)"
    )
    parser.add_argument(
        "--only",
        choices=("all", "loadtest"),
        default="all",
        help="loadtest: only wrk beside mllib loadtest's engine (its default, 1 and 2 processes)"
        " on the mllib defaults row, with each client's CPU per request",
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
                        f"  {row['cpu_us_per_request']:5.0f}us CPU/req"
                        f"  client {row.get('client_cpu_us_per_request', 0):4.0f}us/req"
                        f"  non-2xx {row['non_2xx']}"
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
            if name.startswith("mllib") and "c64" in results[name]:
                print(f"{targets[name].label} p99 at c=64: {results[name]['c64']['p99_ms']:.1f}ms")
        print(f"load average at the end: {results['load_after'][0]:.2f} (other work here)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(targets: dict[str, Target], args) -> dict[tuple[str, int], list[dict]]:
    """Every (target, concurrency) row, `args.rounds` times, each round in a rotated order."""
    plan = [(name, 8) for name in targets]
    plan += [(name, 64) for name, target in targets.items() if target.c64]
    rows: dict[tuple[str, int], list[dict]] = {step: [] for step in plan}
    engines = {"wrk": wrk, "loadgen": loadgen}
    for target in targets.values():  # warm-up (and mllib's defaults scale up to the load)
        if target.engine == "wrk":
            wrk(target, connections=64, duration=min(3, args.duration))
            wrk(target, connections=8, duration=min(2, args.duration))
    for round_ in range(args.rounds):
        shift = round_ * len(plan) // max(1, args.rounds)
        for name, connections in plan[shift:] + plan[:shift]:
            target = targets[name]
            rows[(name, connections)].append(
                engines[target.engine](target, connections=connections, duration=args.duration)
            )
    return rows


def ratios(results: dict, targets: dict[str, Target], processes: list[int]) -> dict[str, float]:
    """The comparisons the goals are stated in, at c=8 and equal process counts."""

    def rps(name: str) -> float:
        return results[name]["c8"]["rps"]

    out = {}
    for name, target in targets.items():  # mllib loadtest's engine beside wrk on the same server
        if target.engine == "loadgen":
            engine = "mllib loadtest"
            if target.load_workers:
                engine += f", {target.load_workers} process(es)"
            for c in ("c8", "c64"):
                out[f"{engine} / wrk, {c.replace('c', 'c=')}"] = (
                    results[name][c]["rps"] / results["mllib_default"][c]["rps"]
                )
    if "bare_litserve" not in targets:  # --only loadtest
        return {label: round(value, 2) for label, value in out.items()}
    defaults = targets["mllib_default"].label
    for name, target in targets.items():  # the goals: mllib at its defaults over each peer
        if name.startswith(("ray", "bentoml", "bare")):
            out[f"{defaults} / {target.label}"] = rps("mllib_default") / rps(name)
        if name.startswith("mlflow"):
            plain = targets["mllib_default_plain"].label
            out[f"{plain} / {target.label}"] = rps("mllib_default_plain") / rps(name)
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

    targets["mllib_default"] = deploy_prod(stack, template, tmp, None, 0)
    targets["loadtest_default"] = dataclasses.replace(
        targets["mllib_default"], label="mllib loadtest's engine, same server", engine="loadgen"
    )
    if args.only == "loadtest":
        for workers in (1, 2):
            targets[f"loadtest_{workers}"] = dataclasses.replace(
                targets["loadtest_default"],
                label=f"mllib loadtest's engine, {workers} process(es)",
                load_workers=workers,
            )
        return targets
    targets["mllib_default_plain"] = deploy_prod(stack, template, tmp, None, 0, plain=True)
    for p in args.processes:
        targets[f"mllib_inline_{p}"] = deploy_prod(stack, template, tmp, "inline", p)
    targets["mllib_worker"] = deploy_prod(stack, template, tmp, "worker", 1)
    for src in map(Path, args.baseline_src):
        for name in [n for n in targets if n.startswith("mllib_")]:
            if name.startswith("mllib_default"):
                continue
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
    if args.ray:
        targets["ray_serve"] = start_ray(stack, tmp, args.ray)
    if args.bentoml:
        targets["bentoml"] = start_bentoml(stack, tmp, args.bentoml)
    return targets


def deploy_prod(
    stack: ExitStack,
    template: Path,
    tmp: Path,
    inference: str | None,
    replicas: int,
    *,
    plain: bool = False,
) -> Target:
    """A prod deployment of the trained template (its own copy of the project) and a key.
    `inference` None: mllib's defaults (nothing set); else that mode with `replicas` fixed.
    `plain`: the model without its predict_batch (one predict() per request, making one
    scikit-learn call as MLflow's sklearn flavour does)."""
    from mllib.serving.control import keys
    from mllib.serving.control.deploy import DeployContext, deploy, stop
    from mllib.workspace import Workspace

    project = tmp / f"proj-{inference or 'default'}-{replicas}{'-plain' if plain else ''}"
    shutil.copytree(template, project)
    config = project / "mllib.toml"
    if inference is not None:
        config.write_text(config.read_text() + fixed_settings(inference, replicas))
    if plain:
        model = project / "model.py"
        source = model.read_text()
        source = source.replace(
            "        return self.predict_batch([request])[0]",
            "        import numpy as np\n\n"
            "        rows = np.asarray(request['features'], dtype=float).reshape(1, -1)\n"
            "        proba = self.model.predict_proba(rows)[0]\n"
            "        return {'label': self.model.classes_[proba.argmax()],"
            " 'probability': proba[1]}",
        )
        model.write_text(source.replace("def predict_batch(", "def _predict_batch("))
        mllib_cli("train", "model.py", cwd=project)  # a version with this code
    ctx = DeployContext.create(Workspace.find(project))
    dep = deploy(ctx, "classifier", "prod", force=True, reason="benchmark").deployment
    stack.callback(stop, ctx, "prod")
    key = keys.create_key(
        ctx.ws.registry, ctx.clock, ctx.settings.keys, env="prod", user=ctx.user, rps=1e9, burst=1e9
    ).token
    if inference is None:
        cores = os.cpu_count()
        what = "plain predict()" if plain else "predict_batch"
        label, processes = f"mllib prod, defaults (1..{cores} replicas), {what}", cores or 1
    elif inference == "inline":
        label, processes = f"mllib prod, inline, {replicas} replica(s)", replicas
    else:
        label, processes = f"mllib prod, worker, {replicas}+1 processes", replicas + 1
    target = Target(label, f"{dep.url}/predict", MLLIB_BODY, processes, dep.pid, key, dep.log_path)
    wait_until_up(target, None)
    return target


def fixed_settings(inference: str, replicas: int) -> str:
    """mllib.toml lines for a deployment in `inference` mode with `replicas` fixed (no
    autoscaling: a baseline checkout's row must run as many replicas as this one's)."""
    return (
        f'\n[deploy]\ninference = "{inference}"\nworkers = 1\napi_servers = 1\n'
        f"\n[deploy.prod]\nmin_replicas = {replicas}\nmax_replicas = {replicas}\n"
    )


def deploy_prod_from(
    src: Path, template: Path, tmp: Path, inference: str, workers: int, stack: ExitStack
) -> Target:
    """deploy_prod, by the mllib whose source is `src` (its CLI, with this venv's packages)."""
    project = tmp / f"baseline-{src.name}-{inference}-{workers}"
    shutil.copytree(template, project)
    config = project / "mllib.toml"
    replicas = workers if inference == "inline" else 1
    config.write_text(config.read_text() + fixed_settings(inference, replicas))
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


def start_ray(stack: ExitStack, tmp: Path, python: str) -> Target:
    """Ray Serve at its best (benchmarks/ray_serve_model.py), one replica per core."""
    port, cores = free_port(), os.cpu_count() or 1
    argv = [python, str(ROOT / "benchmarks" / "ray_serve_model.py"), str(port), str(cores)]
    proc = stack.enter_context(background(argv, tmp / "ray.log", cwd=tmp))
    version = subprocess.run(
        [python, "-c", "import ray; print(ray.__version__)"], capture_output=True, text=True
    ).stdout.strip()
    label = f"Ray Serve {version}, high-throughput mode, {cores} replicas, @serve.batch"
    target = Target(label, f"http://127.0.0.1:{port}/predict", MLLIB_BODY, cores, proc.pid)
    wait_until_up(target, proc, timeout=240)
    return target


def start_bentoml(stack: ExitStack, tmp: Path, bentoml: str) -> Target:
    """BentoML at its best (benchmarks/bentoml_model.py): batching, a worker per core."""
    port, cores = free_port(), os.cpu_count() or 1
    argv = [bentoml, "serve", "benchmarks.bentoml_model:Classifier", "--port", str(port)]
    argv += ["--host", "127.0.0.1"]
    proc = stack.enter_context(background(argv, tmp / "bentoml.log", cwd=ROOT))
    python = str(Path(bentoml).parent / "python")
    version = subprocess.run(
        [python, "-c", "import bentoml; print(bentoml.__version__)"], capture_output=True, text=True
    ).stdout.strip()
    label = f"BentoML {version}, batching, {cores} workers"
    body = json.dumps({"features": [FEATURES]})  # a batchable API takes a batch of rows
    target = Target(label, f"http://127.0.0.1:{port}/predict", body, cores, proc.pid)
    wait_until_up(target, proc, timeout=240)
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

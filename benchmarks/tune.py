"""Benchmark: `mllib tune` beside a plain `optuna.optimize` loop, in one run.

1. Dispatch overhead per trial (sampler + mllib's bookkeeping, the model's own time left out):
   a plain `study.optimize` loop on a trivial objective (TPE, JournalStorage, seed 0) against
   the same study driven by mllib, each trial an ordinary run recorded in the registry, under
   a runtime that starts nothing (the `null` runtime below: the worker's own time is the model's
   side). Goal: <= 2x.
2. Trials per second with the process runtime (a trivial model: each trial is a real worker
   process), sequential and 2 at once, with warm workers (forked from a worker that imported
   mllib and the model's libraries once, mllib.runtime.forkserver) and, interleaved, without
   (a new Python per trial, as before); and where a run's start-up cost goes: the null
   runtime's run (mllib's bookkeeping), `python -c pass`, and the worker's imports.
   Goal: >= 30 trials/s.
3. The sklearn template (`mllib init --template sklearn`), C and max_iter searched with the random
   sampler (seed 0): 4 trials at once against one at a time, same trials, same best value.
   Goal: <= 0.35x the wall time on a machine with 4 free slots; with `--agents`, the trials run
   on two agents of the SSH lab (tests/agents/sshlab.py) with 2 slots each.

    bash scripts/bench.sh tune                    # full
    python benchmarks/tune.py --short --json      # the test suite's short mode
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRIVIAL = """
import mllib


class Trivial:
    def __init__(self):
        self.x = mllib.Param(0.0)

    def train(self):
        mllib.log_metric("loss", (self.x - 2) ** 2)

    def predict(self, request):
        return self.x
"""


# -- a runtime that starts nothing: the run's worker ends at once, successfully -------------------
class NullHandle:
    pid = None

    def output(self) -> Iterator[bytes]:
        return iter(())

    def wait(self, timeout: float | None = None) -> Any:
        from mllib.protocol.failure import ExitStatus

        return ExitStatus(0)

    def cancel(self, grace_s: float) -> None:
        pass


class NullRuntime:
    """Starts no worker: it writes the one metric point the trivial model logs, (x - 2)^2, as the
    worker's EventWriter writes it (one line, without the writer's flushing thread, which lives
    in the worker's process), and the run ends. What is left is mllib's own bookkeeping
    (prepare, record, supervise, ingest, finish)."""

    name = "null"

    def available(self) -> str | None:
        return None

    def start(self, job: Any) -> NullHandle:
        from mllib.protocol.events import EVENTS_FILE, METRIC

        spec = json.loads((job.run_dir / "spec.json").read_text())
        loss = (float(spec["cli_params"].get("x", 0.0)) - 2) ** 2
        point = {"type": METRIC, "name": "loss", "value": loss, "step": 0, "seq": 1,
                 "ts": time.time()}  # fmt: skip
        with open(job.run_dir / EVENTS_FILE, "ab") as events:
            events.write(json.dumps(point).encode() + b"\n")
        return NullHandle()


def _register_null_runtime() -> None:
    from mllib.runtime import RUNTIMES

    sys.modules.setdefault("bench_tune", sys.modules[__name__])
    RUNTIMES["null"] = "bench_tune:NullRuntime"


# -- the measurements ----------------------------------------------------------------------------
def optuna_loop(trials: int, work: Path) -> dict[str, Any]:
    """A plain `optimize` loop on a trivial objective, with the storage mllib uses."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = str(work / "optuna.journal")
    storage = JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.TPESampler(seed=0))
    cpu = _cpu_s()
    started = time.perf_counter()
    study.optimize(lambda t: (t.suggest_float("x", -5, 5) - 2) ** 2, n_trials=trials)
    seconds = time.perf_counter() - started
    cpu = _cpu_s() - cpu
    return {"trials": trials, "seconds": seconds, "ms_per_trial": 1000 * seconds / trials,
            "cpu_ms_per_trial": 1000 * cpu / trials, "best_value": study.best_value}  # fmt: skip


def mllib_study(
    root: Path, trials: int, runtime: str | None, parallel: int, name: str, **options: Any
) -> dict[str, Any]:
    """A study driven by mllib (in this process, as `mllib tune` drives it)."""
    from mllib.runs.target import locate_model
    from mllib.tuning import api
    from mllib.tuning.driver import Launch
    from mllib.tuning.settings import TuneSettings

    old = os.getcwd()
    os.chdir(root)
    try:
        target = locate_model(options.pop("model", "model.py"))
        settings = TuneSettings(
            metric=options.pop("metric", "loss"),
            trials=trials,
            parallel=parallel,
            sampler=options.pop("sampler", "tpe"),
            pruner="none",
            name=name,
            seed=0,
        )
        space = options.pop("space", ["x=uniform:-5:5"])
        launch = Launch(runtime=runtime, remote=options.pop("remote", False), seed=0)
        api.start(target, space, settings, launch=launch)
        cpu = _cpu_s()
        started = time.perf_counter()
        tally = api.run(target, name)
        seconds = time.perf_counter() - started
        cpu = _cpu_s() - cpu
    finally:
        os.chdir(old)
    return {"trials": trials, "parallel": parallel, "seconds": seconds,
            "ms_per_trial": 1000 * seconds / trials, "trials_per_s": trials / seconds,
            "cpu_ms_per_trial": 1000 * cpu / trials,
            "best_value": tally.best_value, "complete": tally.complete}  # fmt: skip


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process's threads and its ended children (the process
    runtime's workers): what a run costs, whatever else shares the machine."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def _project(work: Path, name: str, model: str) -> Path:
    root = work / name
    root.mkdir()
    (root / "model.py").write_text(model)
    (root / "mllib.toml").write_text('[runtime]\nlocal = "process"\n')
    return root


def _spawn_ms(args: list[str], repeat: int) -> tuple[float, float]:
    """Median wall ms of a command, and its mean CPU ms."""
    times = []
    cpu = _cpu_s()
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times), 1000 * (_cpu_s() - cpu) / repeat


def startup_breakdown(root: Path, repeat: int) -> dict[str, float]:
    """Where one trial's run goes: mllib's bookkeeping alone (null runtime), the process runtime's
    whole run, and the parts of a worker process: median wall ms, and mean CPU ms (user + system,
    the worker's included), which the machine's load moves far less."""
    from mllib.runs import api

    old = os.getcwd()
    os.chdir(root)
    try:
        times: dict[str, list[float]] = {"null": [], "process": []}
        cpu = dict.fromkeys(times, 0.0)
        for _ in range(repeat):
            for runtime in times:
                before = _cpu_s()
                started = time.perf_counter()
                record = api.train("model.py", {"x": 1.0}, runtime=runtime, echo=None)
                times[runtime].append(time.perf_counter() - started)
                cpu[runtime] += _cpu_s() - before
                assert record.status == "succeeded", record.error
    finally:
        os.chdir(old)
    python = sys.executable
    found = {
        "run, null runtime (mllib's bookkeeping) ms": 1000 * statistics.median(times["null"]),
        "run, null runtime CPU ms": 1000 * cpu["null"] / repeat,
        "run, process runtime ms": 1000 * statistics.median(times["process"]),
        "run, process runtime CPU ms": 1000 * cpu["process"] / repeat,
    }
    for label, args in (
        ("python -c pass", ["-c", "pass"]),
        ("python -c 'import mllib.worker.main'", ["-c", "import mllib.worker.main"]),
    ):
        found[f"{label} ms"], found[f"{label} CPU ms"] = _spawn_ms([python, *args], repeat)
    return found


def sklearn_parallel(work: Path, trials: int, agents: bool) -> dict[str, Any]:
    """The sklearn template: one trial at a time, then 4 at once, same sampler and seed."""
    from mllib.scaffold import init_project

    root = work / "sklearn"
    init_project(root, "sklearn")
    options = {
        "metric": "accuracy",
        "sampler": "random",
        "space": ["C=loguniform:1e-3:1e2", "max_iter=int:50:300:50"],
        "remote": agents,
    }
    runtime = None if agents else "process"
    load = [os.getloadavg()[0]]  # the 1-minute load average before each and after both
    one = mllib_study(root, trials, runtime, 1, "sequential", **dict(options))
    load.append(os.getloadavg()[0])
    four = mllib_study(root, trials, runtime, 4, "parallel", **dict(options))
    load.append(os.getloadavg()[0])
    return {
        "load_average": load,
        "sequential_cpu_ms_per_trial": one["cpu_ms_per_trial"],
        "parallel4_cpu_ms_per_trial": four["cpu_ms_per_trial"],
        "trials": trials,
        "where": "2 agents of the SSH lab, 2 slots each" if agents else "this machine",
        "cores": os.cpu_count(),
        "sequential_s": one["seconds"],
        "parallel4_s": four["seconds"],
        "ratio": four["seconds"] / one["seconds"],
        "same_best_value": one["best_value"] == four["best_value"],
        "best_value": one["best_value"],
    }


@contextmanager
def _with_agents() -> Iterator[None]:
    sys.path.insert(0, str(ROOT / "tests" / "agents"))
    from sshlab import Lab, missing_prerequisite

    from mllib.agents.api import add_agent

    reason = missing_prerequisite()
    if reason:
        raise SystemExit(f"cannot run --agents: {reason}")
    lab = Lab.create(2)
    try:
        for i, host in enumerate(lab.hosts):
            add_agent(f"bench{i}", **lab.spec_args(host), gpus=2, trust_host_key=True)
        yield
    finally:
        lab.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="a few trials of each (the suite)")
    parser.add_argument("--agents", action="store_true", help="the sklearn part on lab agents")
    parser.add_argument(
        "--only", choices=("dispatch", "process", "sklearn"), help="measure one part only"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    n_dispatch, n_process, n_sklearn, repeat = (20, 6, 4, 2) if args.short else (200, 60, 16, 5)

    work = Path(tempfile.mkdtemp(prefix="mllib-bench-tune-"))
    os.environ["MLLIB_HOME"] = str(work / "home")
    os.environ.setdefault("MLLIB_QUIET", "1")
    _register_null_runtime()
    results: dict[str, Any] = {"load_average_at_start": os.getloadavg()[0]}
    if args.only in (None, "dispatch"):
        base = optuna_loop(n_dispatch, work)
        dispatch_root = _project(work, "dispatch", TRIVIAL)
        mine = mllib_study(dispatch_root, n_dispatch, "null", 1, "dispatch")
        four = mllib_study(dispatch_root, n_dispatch, "null", 4, "dispatch-4")
        results["dispatch"] = {
            "optuna_optimize_ms_per_trial": base["ms_per_trial"],
            "mllib_ms_per_trial": mine["ms_per_trial"],
            "ratio": mine["ms_per_trial"] / base["ms_per_trial"],
            "mllib_parallel4_ms_per_trial": four["ms_per_trial"],
            "ratio_parallel4": four["ms_per_trial"] / base["ms_per_trial"],
            "optuna_optimize_cpu_ms_per_trial": base["cpu_ms_per_trial"],
            "mllib_cpu_ms_per_trial": mine["cpu_ms_per_trial"],
            "cpu_ratio": mine["cpu_ms_per_trial"] / base["cpu_ms_per_trial"],
            "trials": n_dispatch,
        }
    if args.only in (None, "process"):
        process_root = _project(work, "process", TRIVIAL)
        rows: dict[str, Any] = {}
        for p in (1, 2):  # warm workers (the default) and without, interleaved
            for warm in ("1", "0"):
                os.environ["MLLIB_WARM_WORKERS"] = warm
                label = f"parallel {p}" + ("" if warm == "1" else ", warm workers off")
                name = f"process-{p}-{'warm' if warm == '1' else 'cold'}"
                rows[label] = mllib_study(process_root, n_process, "process", p, name)
                rows[label]["load_average"] = os.getloadavg()[0]
        os.environ.pop("MLLIB_WARM_WORKERS")
        results["process_runtime"] = rows
        results["startup"] = startup_breakdown(_project(work, "startup", TRIVIAL), repeat)
    if args.only in (None, "sklearn"):
        if args.agents:
            with _with_agents():
                results["sklearn"] = sklearn_parallel(work, n_sklearn, agents=True)
        else:
            results["sklearn"] = sklearn_parallel(work, n_sklearn, agents=False)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print(results)
    return 0


def _print(results: dict[str, Any]) -> None:
    if "dispatch" in results:
        _print_dispatch(results["dispatch"])
    if "process_runtime" in results:
        _print_process(results)
    if "sklearn" in results:
        _print_sklearn(results["sklearn"])


def _print_dispatch(d: dict[str, Any]) -> None:
    print(f"dispatch overhead per trial ({d['trials']} trials, TPE):")
    print(f"  optuna.optimize, trivial objective:  {d['optuna_optimize_ms_per_trial']:.2f} ms")
    print(f"  mllib tune, null runtime:            {d['mllib_ms_per_trial']:.2f} ms")
    print(f"  ratio: {d['ratio']:.2f}x (goal <= 2x)")
    print(f"  CPU per trial: optuna.optimize {d['optuna_optimize_cpu_ms_per_trial']:.2f} ms, "
          f"mllib tune {d['mllib_cpu_ms_per_trial']:.2f} ms ({d['cpu_ratio']:.2f}x)")  # fmt: skip
    print(f"  mllib tune, null runtime, 4 at once: {d['mllib_parallel4_ms_per_trial']:.2f} ms "
          f"({d['ratio_parallel4']:.2f}x)")  # fmt: skip


def _print_process(results: dict[str, Any]) -> None:
    print("process runtime, trivial model:")
    for name, row in results["process_runtime"].items():
        print(f"  {name}: {row['trials_per_s']:.1f} trials/s ({row['ms_per_trial']:.0f} ms/trial, "
              f"{row['cpu_ms_per_trial']:.0f} ms CPU/trial; load average "
              f"{row['load_average']:.1f})")  # fmt: skip
    print("where a run's start-up goes (medians):")
    for name, ms in results["startup"].items():
        print(f"  {name}: {ms:.0f}")


def _print_sklearn(s: dict[str, Any]) -> None:
    print(f"sklearn template, {s['trials']} trials on {s['where']} ({s['cores']} cores):")
    print(f"  sequential {s['sequential_s']:.1f} s, 4 at once {s['parallel4_s']:.1f} s: "
          f"{s['ratio']:.2f}x (goal <= 0.35x with 4 free slots); same best value: "
          f"{s['same_best_value']}; load average {', '.join(f'{x:.1f}' for x in s['load_average'])}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

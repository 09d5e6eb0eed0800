"""The team server's goals, measured side by side in one run (bash scripts/bench.sh server):

- submissions through the HTTP API, 4 concurrent clients, each acknowledged durably, on SQLite
  and PostgreSQL (a throwaway cluster), beside MLflow's tracking server `create_run` over REST
  (`--mlflow PATH`: its `mlflow` in .venv-bench) on a SQLite backend;
- a day's load: submissions from 20 users with bursty arrival times, replayed through the API as
  fast as it takes them, none lost (the replay's speed over real time is reported);
- the scheduler's decision p99 with that many queued, and with 100,000 queued straight into the
  database (`scheduler`, seconds where the day takes an hour);
- enqueue -> claimed by an idle dispatcher (woken by the server's event on SQLite, by
  LISTEN/NOTIFY on PostgreSQL), p50/p99;
- fair share over 10,000 claims of 20 users on 8 GPU slots (each user's share of claims);
- enqueue -> worker started on an idle agent (a real agent of the sshd lab; root only), p50.

`--short` runs each briefly (the test suite's mode); `--only PART` runs some parts alone.
`--baseline-src DIR` (another checkout's source, e.g. `git archive main | tar -x -C DIR`)
measures that checkout's server too, in the submissions part: `--rounds N` rounds, each running
the baseline's server and this one's in turn on each database, so a loaded machine's swings
touch both alike; the medians are compared. Prints the results as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIENTS = 4
USERS = 20
PARTS = ("submissions", "day", "scheduler", "claim", "fair", "worker")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- a server process --------------------------------------------------------------------------
class Server:
    """`mllib server start` of this checkout, or of the source in `src` (a baseline)."""

    def __init__(self, root: Path, database: str | None, src: Path | None = None) -> None:
        from tests.server.conftest import free_port

        self.home = root / f"home-{uuid.uuid4().hex[:6]}"
        self.port = free_port()
        # Its home made and its users added by the same source that serves it: a baseline
        # must not find a database migrated by this checkout's newer schema.
        self.src = src
        args = ["server", "init", "--dir", str(self.home), "--port", str(self.port)]
        if database:
            args += ["--database", database]
        self._cli(*args)
        self.tokens = self._add_users()
        self.log_path = self.home / "bench-server.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mllib", "server", "start", "--dir", str(self.home)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=src,  # `python -m` puts the working folder first on the path
            )
        self._wait()
        self.code_tree = self._upload_code()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str] | None:
        return {**os.environ, "PYTHONPATH": str(self.src)} if self.src else None

    def _add_users(self) -> dict[str, str]:
        """USERS users, through the library (what `mllib server users add` calls)."""
        script = (
            "import json, sys\n"
            "from mllib.server.accounts import add_user\n"
            "from mllib.server.main import database, home_at\n"
            "reg = database(home_at(sys.argv[1]))\n"
            "print(json.dumps({f'u{i:02d}': add_user(reg, f'u{i:02d}') for i in range(int(sys.argv[2]))}))\n"
            "reg.close()\n"
        )
        done = subprocess.run([sys.executable, "-c", script, str(self.home), str(USERS)], capture_output=True,
                              text=True, timeout=120, check=True, env=self._env(), cwd=self.src)  # fmt: skip
        return dict(json.loads(done.stdout))

    def _cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "mllib", *args], capture_output=True,
                              text=True, timeout=120, env=self._env(), cwd=self.src)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"mllib {' '.join(args[:2])} failed: {done.stderr[-2000:]}")
        return done.stdout

    def _wait(self) -> None:
        import httpx

        for _ in range(600):
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.1)
        log = self.log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the server ({self.src or 'this checkout'}) did not start:\n{log}")

    def _upload_code(self) -> str:
        """A small code tree (a model file and its manifest), as a client would upload it."""
        import hashlib

        import httpx

        from mllib.store import LocalBlobStore
        from mllib.store.trees import put_tree

        scratch = Path(tempfile.mkdtemp())
        folder = scratch / "code"
        folder.mkdir()
        (folder / "model.py").write_text("class M:\n    def train(self):\n        pass\n")
        store = LocalBlobStore(scratch / "store")
        tree = put_tree(store, folder)
        with httpx.Client(base_url=self.url, headers=self.auth("u00")) as http:
            wanted = {"shas": self._shas(store, tree.sha256)}
            for sha in http.post("/api/v1/blobs/missing", json=wanted).json()["missing"]:
                data = store.get_bytes(sha)
                assert hashlib.sha256(data).hexdigest() == sha
                http.put(f"/api/v1/blobs/{sha}", content=data).raise_for_status()
        shutil.rmtree(scratch, ignore_errors=True)
        return tree.sha256

    @staticmethod
    def _shas(store, tree_sha: str) -> list[str]:
        from mllib.store.trees import read_tree

        return [*(f.sha256 for f in read_tree(store, tree_sha).files), tree_sha]

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def body(self) -> dict:
        from tests.server.conftest import submission_body

        return submission_body(self.code_tree, params={"lr": 0.1}, sources={"lr": "cli"})

    def cpu_s(self) -> float:
        """CPU time (user + system) the server process has used so far: a loaded machine
        stretches its wall times, much less what each submission costs it."""
        import psutil

        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough HTTP to POST JSON and read the
    answer (its Content-Length body). httpx took 0.68 ms of this process's CPU a request, as much
    as the server's own 0.9 ms, on the same 2 cores and under one GIL: the load generator capped
    the rate it measured. This costs a tenth of that."""

    def __init__(self, url: str) -> None:
        import socket

        host, _, port = url.removeprefix("http://").partition(":")
        self.host = f"{host}:{port}"
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def post_json(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, body) of a POST of `body` (JSON) to `path`."""
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{head}\r\n"
        ).encode() + body
        self.sock.sendall(request)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._fill()
        lines = self.buffer[:end].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        sizes = [ln.split(b":", 1)[1] for ln in lines[1:] if ln[:15].lower() == b"content-length:"]
        if not sizes:
            raise RuntimeError(f"an answer without Content-Length: {lines[0]!r}")
        size = int(sizes[0])
        self.buffer = self.buffer[end + 4 :]
        while len(self.buffer) < size:
            self._fill()
        answer, self.buffer = self.buffer[:size], self.buffer[size:]
        return status, answer

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data

    def close(self) -> None:
        self.sock.close()


def submit_burst(server: Server, total: int, schedule: list[tuple[float, str]] | None = None):
    """`total` submissions from CLIENTS threads (each its own connection, Connection's lean
    HTTP); with `schedule` ((offset_s, user) pairs), each is sent no earlier than its offset.
    Returns (latencies, elapsed, acknowledged run ids)."""
    latencies: list[float] = []
    acked: list[str] = []
    lock = threading.Lock()
    plan = schedule or [(0.0, f"u{i % USERS:02d}") for i in range(total)]
    cursor = iter(range(len(plan)))
    auth = {user: server.auth(user) for user in server.tokens}
    start = time.perf_counter()

    def client() -> None:
        http = Connection(server.url)
        try:
            while True:
                with lock:
                    index = next(cursor, None)
                if index is None:
                    return
                offset, user = plan[index]
                wait = start + offset - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                body = server.body()
                data = json.dumps(body).encode()
                began = time.perf_counter()
                status, answer = http.post_json("/api/v1/runs", data, auth[user])
                took = time.perf_counter() - began
                if status not in (200, 201):
                    raise RuntimeError(f"submission answered {status}: {answer[:300]!r}")
                with lock:
                    latencies.append(took)
                    acked.append(body["run_id"])
        finally:
            http.close()

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - start, acked


def count_runs(database: str, run_ids: list[str]) -> int:
    from mllib.registry import Registry

    reg = Registry.connect(database)
    try:
        present = 0
        for i in range(0, len(run_ids), 500):
            chunk = run_ids[i : i + 500]
            marks = ", ".join("?" for _ in chunk)
            present += reg.query(f"SELECT COUNT(*) AS n FROM jobs WHERE run_id IN ({marks})", chunk)[0]["n"]  # fmt: skip
        return int(present)
    finally:
        reg.close()


def day_schedule(total: int, speedup: float) -> list[tuple[float, str]]:
    """A bursty day of `total` submissions from USERS users (office hours busier, bursts of a
    sweep's runs), compressed `speedup` times."""
    rng = random.Random(11)
    times: list[float] = []
    while len(times) < total:
        t = rng.uniform(0, 86400)
        busy = 1.0 if 8 * 3600 <= t % 86400 <= 19 * 3600 else 0.3
        if rng.random() < busy:
            burst = rng.choice([1, 1, 1, 5, 20])  # a sweep arrives at once
            times += [t] * burst
    times = sorted(times[:total])
    return [(t / speedup, f"u{rng.randrange(USERS):02d}") for t in times]


# -- the parts ------------------------------------------------------------------------------------
def submission_round(root: Path, location: str, per_db: int, src: Path | None = None) -> dict:
    """One server (this checkout's, or `src`'s) on a fresh database: `per_db` submissions."""
    server = Server(root, location if location.startswith("postgresql") else None, src)
    try:
        submit_burst(server, 50)  # warm up
        load = os.getloadavg()[0]
        cpu, client_cpu = server.cpu_s(), time.process_time()
        latencies, elapsed, acked = submit_burst(server, per_db)
        cpu, client_cpu = server.cpu_s() - cpu, time.process_time() - client_cpu
        db = location if location.startswith("postgresql") else str(server.home / "registry.db")
        return {
            "submissions": len(acked),
            "per_s": round(len(acked) / elapsed, 1),
            "p50_ms": round(pct(latencies, 0.5) * 1000, 2),
            "p99_ms": round(pct(latencies, 0.99) * 1000, 2),
            "all_present": count_runs(db, acked) == len(acked),
            "server_cpu_ms_each": round(cpu * 1000 / max(len(acked), 1), 3),
            "client_cpu_ms_each": round(client_cpu * 1000 / max(len(acked), 1), 3),
            "load_average": round((load + os.getloadavg()[0]) / 2, 1),
        }
    finally:
        server.stop()


def bench_submissions(
    root: Path,
    databases: dict[str, Callable[[], str]],
    per_db: int,
    baselines: Sequence[Path] = (),
    rounds: int = 1,
) -> dict:
    """Per database (a factory of fresh ones), `rounds` interleaved rounds of this checkout's
    server and each baseline's; the median round of each, and this one's rate over each
    baseline's."""
    servers: dict[str, Path | None] = {"this": None, **{f"baseline {b}": b for b in baselines}}
    measured: dict[str, dict[str, list[dict]]] = {}
    for _ in range(rounds):
        for db_name, new_database in databases.items():
            for label, src in servers.items():
                figures = submission_round(root, new_database(), per_db, src)
                measured.setdefault(db_name, {}).setdefault(label, []).append(figures)
    results: dict = {}
    for db_name, by_server in measured.items():
        for label, runs in by_server.items():
            middle = sorted(runs, key=lambda r: r["per_s"])[len(runs) // 2]
            name = db_name if label == "this" else f"{db_name} ({label})"
            results[name] = {**middle, "all_present": all(r["all_present"] for r in runs)}
            cpu = sorted(r["server_cpu_ms_each"] for r in runs)
            results[name]["server_cpu_ms_each"] = cpu[len(cpu) // 2]
            if rounds > 1:
                results[name]["rounds_per_s"] = [r["per_s"] for r in runs]
                results[name]["rounds_p99_ms"] = [r["p99_ms"] for r in runs]
            if label != "this":
                ours = results[db_name]["per_s"]
                results[name]["this_over_it"] = round(ours / middle["per_s"], 2)
                ours_cpu = results[db_name]["server_cpu_ms_each"]
                results[name]["cpu_this_over_it"] = round(
                    ours_cpu / results[name]["server_cpu_ms_each"], 2
                )
    return results


def bench_mlflow(root: Path, mlflow: str, total: int) -> dict:
    """MLflow's tracking server (SQLite backend) `runs/create` over REST, 4 clients."""
    import httpx

    from tests.server.conftest import free_port

    port = free_port()
    folder = root / "mlflow"
    folder.mkdir()
    proc = subprocess.Popen(
        [mlflow, "server", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
         "--default-artifact-root", str(folder / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        latencies: list[float] = []
        lock = threading.Lock()
        left = iter(range(total + 50))

        def client() -> None:
            with httpx.Client(base_url=url, timeout=60) as http:
                while next(left, None) is not None:
                    began = time.perf_counter()
                    http.post(
                        "/api/2.0/mlflow/runs/create",
                        json={"experiment_id": "0", "start_time": int(time.time() * 1000),
                              "tags": [{"key": "mlflow.user", "value": "u00"}]},
                    ).raise_for_status()  # fmt: skip
                    with lock:
                        latencies.append(time.perf_counter() - began)

        start = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        return {
            "submissions": len(latencies),
            "per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(pct(latencies, 0.5) * 1000, 2),
            "p99_ms": round(pct(latencies, 0.99) * 1000, 2),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def bench_day(root: Path, database: str, total: int, speedup: float) -> dict:
    """A day of `total` submissions replayed as fast as the API takes them (the schedule
    compressed `speedup` times), then the scheduler's decision time with all of them queued."""
    from mllib.plugins import SERVER_MIGRATIONS
    from mllib.registry import Registry

    server = Server(root, database if database.startswith("postgresql") else None)
    try:
        schedule = day_schedule(total, speedup)
        latencies, elapsed, acked = submit_burst(server, total, schedule)
        location = (
            database if database.startswith("postgresql") else str(server.home / "registry.db")
        )
    finally:
        server.stop()
    reg = Registry.connect(location, SERVER_MIGRATIONS)
    try:
        present = count_runs(location, acked)
        queued = reg.query("SELECT COUNT(*) AS n FROM jobs WHERE state = 'queued'")[0]["n"]
        decided = time_decisions(reg, min(2000, total // 2))
    finally:
        reg.close()
    return {
        "submissions": total,
        "acknowledged": len(acked),
        "present": present,
        "lost": total - present,
        "replay_s": round(elapsed, 1),
        "times_real_time": round(86400 / elapsed, 1),
        "ack_p99_ms": round(pct(latencies, 0.99) * 1000, 2),
        "queued_while_deciding": int(queued),
        **decided,
    }


def time_decisions(reg, count: int) -> dict:
    """`count` scheduler decisions on 4 agents of 8 free slots, each claiming one job (none
    ends): their wall time, the CPU each takes here, and beside each a trivial query's (on a
    loaded machine a tail is the wait for a core, not the query)."""
    from mllib.queue.scheduler import pick

    free = {f"gpu{i}": 8 for i in range(4)}
    times, floor, cpu = [], [], 0.0
    for _ in range(count):
        began, began_cpu = time.perf_counter(), time.process_time()
        pick(reg, free)
        times.append(time.perf_counter() - began)
        cpu += time.process_time() - began_cpu
        began = time.perf_counter()
        reg.query("SELECT 1 AS one")
        floor.append(time.perf_counter() - began)
    return {
        "decision_p50_ms": round(pct(times, 0.5) * 1000, 3),
        "decision_p99_ms": round(pct(times, 0.99) * 1000, 3),
        "decision_cpu_ms": round(cpu * 1000 / max(count, 1), 3),  # this process's (mean)
        "select_1_p99_ms": round(pct(floor, 0.99) * 1000, 3),
        "claims_per_s": round(len(times) / sum(times), 1) if times else 0.0,
    }


def bench_scheduler(database: str, queued: int, decisions: int) -> dict:
    """The scheduler's decision with `queued` jobs waiting (20 users, priorities mixed), filled
    straight into the database (the day's part fills it through the API, for an hour); each
    decision claims one job. Beside it, a trivial query's tail in the same loop: on a loaded
    machine the p99 is the wait for a core, not the query."""
    from mllib.plugins import SERVER_MIGRATIONS
    from mllib.registry import Registry

    reg = Registry.connect(database, SERVER_MIGRATIONS)
    rng = random.Random(5)
    now = time.time()
    with reg.transaction():
        reg.conn.executemany(
            "INSERT INTO runs (id, model, action, status, created_at) "
            "VALUES (?, 'm', 'train', 'queued', '2026-01-01T00:00:00Z')",
            [(f"s{i:07d}",) for i in range(queued)],
        )
        reg.conn.executemany(
            'INSERT INTO jobs (run_id, "user", priority, gpus, state, enqueued_at, not_before, '
            "attempt) VALUES (?, ?, ?, 1, 'queued', ?, 0, 1)",
            [(f"s{i:07d}", f"u{rng.randrange(USERS):02d}", rng.choice([0, 0, 1]), now + i * 1e-3)
             for i in range(queued)],
        )  # fmt: skip
    if reg.is_postgres:
        reg.conn.execute("ANALYZE jobs")  # as autovacuum would have by now
    try:
        decided = time_decisions(reg, decisions)
        claimed = reg.query("SELECT COUNT(*) AS n FROM jobs WHERE state = 'running'")[0]["n"]
    finally:
        reg.close()
    return {
        "queued": queued,
        "decisions": decisions,
        "claimed": int(claimed),
        **decided,
        "load_average": round(os.getloadavg()[0], 1),
    }


def bench_claim_latency(database: str, jobs: int) -> dict:
    """Enqueue -> claimed by an idle claimer waiting to be woken (the server's event on SQLite,
    LISTEN/NOTIFY on PostgreSQL from another connection)."""
    from mllib.plugins import SERVER_MIGRATIONS
    from mllib.queue.jobs import CHANNEL, Job, enqueue
    from mllib.queue.scheduler import pick
    from mllib.registry import Registry
    from mllib.registry.runs import RunRecord, create_run, now

    producer = Registry.connect(database, SERVER_MIGRATIONS)
    claimer = Registry.connect(database)
    wake = threading.Event()
    committed: dict[str, float] = {}
    claimed: dict[str, float] = {}
    stop = threading.Event()

    def listen() -> None:
        import psycopg

        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            while not stop.is_set():
                for _ in conn.notifies(timeout=0.2, stop_after=1):
                    wake.set()

    def claim() -> None:
        while not stop.is_set():
            wake.wait(0.5)
            wake.clear()
            while (placed := pick(claimer, {"a": 1 << 20})) is not None:
                claimed[placed.job.run_id] = time.perf_counter()

    threads = [threading.Thread(target=claim)]
    if producer.is_postgres:
        threads.append(threading.Thread(target=listen))
    for t in threads:
        t.start()
    time.sleep(0.5)
    for i in range(jobs):
        run_id = f"lat{i:06d}{uuid.uuid4().hex[:6]}"
        with producer.transaction():
            create_run(producer, RunRecord(run_id, "m", "train", "queued", now()), {}, {})
            enqueue(producer, Job(run_id, f"u{i % USERS:02d}"))
        committed[run_id] = time.perf_counter()
        if not producer.is_postgres:
            wake.set()  # the server process wakes its dispatcher itself
        time.sleep(0.01)
    deadline = time.monotonic() + 30
    while len(claimed) < jobs and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    wake.set()
    for t in threads:
        t.join(timeout=10)
    producer.close()
    claimer.close()
    waits = [claimed[r] - committed[r] for r in committed if r in claimed]
    return {
        "jobs": jobs,
        "claimed": len(waits),
        "p50_ms": round(pct(waits, 0.5) * 1000, 2),
        "p99_ms": round(pct(waits, 0.99) * 1000, 2),
    }


def bench_fair_share(database: str, claims: int) -> dict:
    """20 users, each with more waiting than it can run, on 8 GPU slots; a running job ends at
    random after each claim. Each user's share of the claims, against 1/20."""
    from mllib.plugins import SERVER_MIGRATIONS
    from mllib.queue.jobs import Job, done, enqueue, running
    from mllib.queue.scheduler import pick
    from mllib.registry import Registry
    from mllib.registry.runs import RunRecord, create_run, now

    reg = Registry.connect(database, SERVER_MIGRATIONS)
    rng = random.Random(3)
    per_user = claims // USERS + 20
    with reg.transaction():
        for u in range(USERS):
            for i in range(per_user):
                run_id = f"fs{u:02d}{i:06d}"
                create_run(reg, RunRecord(run_id, "m", "train", "queued", now()), {}, {})
                enqueue(reg, Job(run_id, f"u{u:02d}", priority=rng.choice([0, 0, 1])))
    counts: dict[str, int] = {}
    slots = {"a": 4, "b": 4}
    made = 0
    while made < claims:
        used = {"a": 0, "b": 0}
        for job in running(reg):
            used[job.agent or "a"] += 1
        placed = pick(reg, {k: slots[k] - used[k] for k in slots})
        if placed is not None:
            counts[placed.job.user] = counts.get(placed.job.user, 0) + 1
            made += 1
            continue
        busy = running(reg)
        done(reg, rng.choice(busy).run_id)
    reg.close()
    fair = claims / USERS
    worst = max(abs(n - fair) / fair for n in counts.values())
    return {
        "claims": claims,
        "users": len(counts),
        "min": min(counts.values()),
        "max": max(counts.values()),
        "worst_deviation_pct": round(worst * 100, 2),
    }


def bench_worker_start(root: Path, runs: int) -> dict | None:
    """Enqueue -> the run started on an idle agent (a real agent of the sshd lab), p50."""
    sys.path.insert(0, str(ROOT / "tests" / "agents"))
    from sshlab import Lab, missing_prerequisite

    if missing_prerequisite():
        return None
    import httpx

    lab = Lab.create(1)
    server = None
    try:
        os.environ["MLLIB_HOME"] = str(root / "agent-home")
        server = Server.__new__(Server)
        server.home = root / "worker-home"
        server.src = None
        server.log_path = server.home / "bench-server.log"
        from tests.server.conftest import free_port

        server.port = free_port()
        server._cli("server", "init", "--dir", str(server.home), "--port", str(server.port))
        args = lab.spec_args(lab.hosts[0])
        server._cli("server", "agents", "--dir", str(server.home), "add", "h0", "--host",
                    args["host"], "--port", str(args["port"]), "--user", args["user"], "--key",
                    args["key"], "--gpus", "1", "--trust-host-key")  # fmt: skip
        server.tokens = {"u00": server._cli("server", "users", "add", "u00", "--dir",
                                            str(server.home)).strip()}  # fmt: skip
        with open(server.log_path, "wb") as log:
            server.process = subprocess.Popen(
                [sys.executable, "-m", "mllib", "server", "start", "--dir", str(server.home)],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        server._wait()
        server.code_tree = server._upload_code()
        waits = []
        with httpx.Client(base_url=server.url, headers=server.auth("u00"), timeout=60) as http:
            for _ in range(runs + 1):  # the first one warms the agent's connection up
                body = server.body()
                http.post("/api/v1/runs", json=body).raise_for_status()
                acked = time.time()
                while True:
                    data = http.get(f"/api/v1/runs/{body['run_id']}").json()
                    if data["status"] != "queued" and data["started_at"]:
                        break
                    time.sleep(0.01)
                started = _epoch(data["started_at"])
                waits.append(started - acked)
                while http.get(f"/api/v1/runs/{body['run_id']}").json()["status"] == "running":
                    time.sleep(0.05)
        waits = waits[1:]
        return {
            "runs": len(waits),
            "p50_s": round(pct(waits, 0.5), 3),
            "max_s": round(max(waits), 3),
        }
    finally:
        if server is not None and getattr(server, "process", None) is not None:
            server.stop()
        lab.close()


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--json", action="store_true", help="(the output is always JSON)")
    parser.add_argument("--mlflow", help="an `mlflow` executable: its tracking server beside")
    parser.add_argument("--day", type=int, default=100_000, help="submissions in the day replayed")
    parser.add_argument("--no-agents", action="store_true", help="skip the worker-start part")
    parser.add_argument(
        "--postgres", help="a cluster's URL to make databases in (default: a new one)"
    )
    parser.add_argument("--only", action="append", choices=PARTS, help="these parts alone")
    parser.add_argument(
        "--baseline-src", action="append", default=[], type=Path, metavar="DIR",
        help="another checkout's source: its server measured too (submissions), interleaved",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1, help="interleaved submission rounds")
    parser.add_argument("--submissions", type=int, help="per round and database (5,000)")
    opts = parser.parse_args()
    parts = set(opts.only or PARTS)
    from tests.pgcluster import Cluster

    root = Path(tempfile.mkdtemp(prefix="mllib-bench-server-"))
    cluster = Cluster.attach(opts.postgres) if opts.postgres else Cluster()
    results: dict = {}

    def record(part: str, name: str, result: object) -> None:
        """Keep a part's figures, and show them at once (a long run is read as it goes)."""
        results.setdefault(part, {})[name] = result
        print(json.dumps({part: {name: result}}), file=sys.stderr, flush=True)

    try:
        per_db = opts.submissions or (150 if opts.short else 5000)
        day = 200 if opts.short else opts.day
        dbs = {"sqlite": lambda: "sqlite", "postgresql": cluster.new_database}
        if "submissions" in parts:
            found = bench_submissions(root, dbs, per_db, opts.baseline_src, opts.rounds)
            for name, result in found.items():
                record("submissions", name, result)
            if opts.mlflow:
                mlflow = bench_mlflow(root, opts.mlflow, per_db)
                record("submissions", "mlflow create_run", mlflow)
        speedup = 20_000.0 if opts.short else 1000.0
        if "day" in parts:
            record("day", "sqlite", bench_day(root, "sqlite", day, speedup))
            record("day", "postgresql", bench_day(root, cluster.new_database(), day, speedup))
        if "scheduler" in parts:
            queued, decisions = (2000, 100) if opts.short else (100_000, 1000)
            found = bench_scheduler(str(root / "scheduler.db"), queued, decisions)
            record("scheduler", "sqlite", found)
            found = bench_scheduler(cluster.new_database(), queued, decisions)
            record("scheduler", "postgresql", found)
        jobs = 20 if opts.short else 500
        if "claim" in parts:
            claims = bench_claim_latency(str(root / "claims.db"), jobs)
            record("enqueue_to_claim", "sqlite", claims)
            claims = bench_claim_latency(cluster.new_database(), jobs)
            record("enqueue_to_claim", "postgresql", claims)
        n = 400 if opts.short else 10_000
        if "fair" in parts:
            record("fair_share", "sqlite", bench_fair_share(str(root / "fair.db"), n))
            record("fair_share", "postgresql", bench_fair_share(cluster.new_database(), n))
        if "worker" in parts and not opts.no_agents:
            runs = 3 if opts.short else 20
            results["enqueue_to_worker_started"] = bench_worker_start(root, runs)
    finally:
        if not opts.postgres:
            cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Dataset ingest benchmarks, each side by side with its baseline in one run.

    python benchmarks/dataset_ingest.py            # full: 1 GiB ingest, 4 GiB RSS, 1 GiB resume
    python benchmarks/dataset_ingest.py --short    # small sizes, as the test suite runs it

1. Ingest speed: `mllib.datasets.upload` of a file into an empty store vs `sha256sum` of the
   same file (hashing is the floor of a content-addressed store). Page cache warm for both;
   rounds alternate and the medians are reported, with CPU time (user+sys) beside wall time:
   the store's writes cost kernel time that other jobs' I/O can inflate. Goal: >= 0.8x
   sha256sum's throughput.
2. Peak RSS of the `mllib data upload` process for a multi-GB sparse file whose every chunk
   differs, and for a multi-GB URL streamed by a loopback server that generates it on the fly.
   Goal: < 100 MB whatever the size.
3. Re-uploading identical content: bytes written to the store. Goal: 0.
4. Resume: an upload killed with SIGKILL at ~50%, then run again; bytes written twice
   (complete chunks written again, plus the partial chunk the kill cut off). Goal: <= 1 chunk.
5. Upload to a team server: `mllib data upload` of a file to a real server on loopback (SQLite,
   `mllib server start`) vs the same command with `--local` (this project's store), MiB/s of the
   whole command (median of the rounds, a new file each round), then the same file to the server
   again: bytes sent. Goal: 0 (the server has every chunk).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mllib.datasets.manifest import CHUNK_SIZE

MIB = 1024 * 1024
GOALS = {
    "speed_ratio": 0.8,
    "rss_mb": 100.0,
    "reupload_bytes": 0,
    "resent_chunks": 1,
    "server_resent_bytes": 0,
}


def make_file(path: Path, size: int, *, sparse: bool = False) -> None:
    """`size` bytes whose every chunk differs; sparse: only an 8-byte header per chunk is written."""
    block = os.urandom(MIB)
    with open(path, "wb") as handle:
        if sparse:
            handle.truncate(size)
        for offset in range(0, size, MIB):
            handle.seek(offset)
            if sparse:
                if offset % CHUNK_SIZE == 0:
                    handle.write(offset.to_bytes(8, "little"))
            else:
                handle.write((offset.to_bytes(8, "little") + block[8:])[: size - offset])


def new_project(root: Path, name: str) -> Path:
    project = root / name
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    (project / "mllib.toml").write_text('name = "bench"\n[data]\nmax_size_gb = 100\n')
    return project


# `python -c PEAK FILE ARGS...` runs `mllib ARGS...` and writes its own peak RSS (VmHWM, kB) to
# FILE as it exits. Not getrusage's ru_maxrss: Linux carries the parent's peak across fork and
# exec into it, so it reported this benchmark's memory as the command's.
PEAK = """
import atexit, runpy, sys

def _peak(path=sys.argv.pop(1)):
    with open("/proc/self/status") as status:
        kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(path, "w") as out:
        out.write(kb)

atexit.register(_peak)
sys.argv[0] = "mllib"
runpy.run_module("mllib", run_name="__main__", alter_sys=True)
"""


def cli(project: Path, *args: str, peak_file: Path | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "mllib", "data", *args]
    if peak_file is not None:
        command = [sys.executable, "-c", PEAK, str(peak_file), "data", *args]
    return subprocess.Popen(
        command,
        cwd=project,
        env={**os.environ, "CI": "true"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def run_cli(project: Path, *args: str) -> tuple[dict, float, float]:
    """(the --json result, wall seconds, peak RSS in MB) of one `mllib data` command."""
    peak = project.parent / f"{project.name}.peak-rss"  # beside the project, not in it
    started = time.perf_counter()
    proc = cli(project, *args, "--json", peak_file=peak)
    with proc.stdout:  # type: ignore[union-attr]
        out = proc.stdout.read()  # type: ignore[union-attr]
    proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"mllib data {' '.join(args)} failed ({proc.returncode})")
    rss_mb = int(peak.read_text()) / 1024
    peak.unlink()
    return json.loads(out), time.perf_counter() - started, rss_mb


def bench_speed(root: Path, size: int, rounds: int) -> dict:
    from mllib import datasets
    from mllib.workspace import Workspace

    path = root / "speed.bin"
    make_file(path, size)
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # warm the cache
    warm = new_project(root, "warm-up")  # imports and first-use costs, outside the timing
    (warm / "x").write_text("x")
    ws = Workspace.find(warm)
    datasets.upload(warm / "x", "x", ws=ws)
    ws.registry.close()
    ours, theirs, our_cpu, their_cpu = [], [], [], []
    for i in range(rounds):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(["sha256sum", str(path)], stdout=subprocess.DEVNULL, check=True)
        theirs.append(time.perf_counter() - started)
        their_cpu.append(_cpu(before, resource.getrusage(resource.RUSAGE_CHILDREN)))
        project = new_project(root, f"speed{i}")
        ws = Workspace.find(project)
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        datasets.upload(path, "speed", ws=ws)
        ours.append(time.perf_counter() - started)
        our_cpu.append(_cpu(before, resource.getrusage(resource.RUSAGE_SELF)))
        ws.registry.close()
        shutil.rmtree(project)
    path.unlink()
    mine, base = statistics.median(ours), statistics.median(theirs)
    return {
        "size_mib": size // MIB,
        "rounds": rounds,
        "mllib_s": round(mine, 3),
        "sha256sum_s": round(base, 3),
        "mllib_mib_s": round(size / MIB / mine),
        "sha256sum_mib_s": round(size / MIB / base),
        "speed_ratio": round(base / mine, 2),
        "mllib_cpu_s": round(statistics.median(our_cpu), 2),  # user+sys, all threads
        "sha256sum_cpu_s": round(statistics.median(their_cpu), 2),
    }


def _cpu(before: resource.struct_rusage, after: resource.struct_rusage) -> float:
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_rss(root: Path, size: int) -> dict:
    project = new_project(root, "rss")
    path = root / "sparse.bin"
    make_file(path, size, sparse=True)
    result, wall, rss = run_cli(project, "upload", str(path), "--name", "rss")
    again, _, _ = run_cli(project, "upload", str(path), "--name", "rss")
    path.unlink()
    shutil.rmtree(project)
    url_rss, url_wall = bench_url_rss(root, size)
    return {
        "size_mib": size // MIB,
        "file_rss_mb": round(rss, 1),
        "file_wall_s": round(wall, 2),
        "url_rss_mb": round(url_rss, 1),
        "url_wall_s": round(url_wall, 2),
        "rss_mb": round(max(rss, url_rss), 1),
        "stored_first_mib": result["bytes_stored"] // MIB,
        "reupload_bytes": again["bytes_stored"],
    }


def bench_url_rss(root: Path, size: int) -> tuple[float, float]:
    """Peak RSS of uploading a URL whose body a loopback server generates on the fly."""
    block = os.urandom(MIB)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            for offset in range(0, size, MIB):
                self.wfile.write((offset.to_bytes(8, "little") + block[8:])[: size - offset])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    project = new_project(root, "url")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/generated.bin"
        _, wall, rss = run_cli(project, "upload", url, "--name", "url", "--allow-private-urls")
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(project)
    return rss, wall


def bench_resume(root: Path, size: int) -> dict:
    project = new_project(root, "resume")
    path = root / "resume.bin"
    make_file(path, size)
    total_chunks = -(-size // CHUNK_SIZE)
    uploads = project / ".mllib" / "store" / "datasets" / "uploads"
    with cli(project, "upload", str(path), "--name", "resume") as proc:
        deadline = time.monotonic() + 300
        while _journaled(uploads) < total_chunks // 2 and proc.poll() is None:
            if time.monotonic() > deadline:
                raise SystemExit("the upload made no progress")
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
    store = project / ".mllib" / "store" / "datasets"
    complete = sum(p.stat().st_size for p in (store / "objects").glob("*/*"))
    partial = sum(p.stat().st_size for p in (store / "tmp").glob("*"))
    result, _, _ = run_cli(project, "upload", str(path), "--name", "resume")
    resent = complete + partial + result["bytes_stored"] - size
    path.unlink()
    shutil.rmtree(project)
    return {
        "size_mib": size // MIB,
        "killed_at_pct": round(100 * complete / size),
        "second_run_stored_mib": round(result["bytes_stored"] / MIB, 1),
        "second_run_skipped_mib": round(result["bytes_skipped"] / MIB, 1),
        "resent_bytes": resent,
        "resent_chunks": -(-resent // CHUNK_SIZE),
    }


def _journaled(folder: Path) -> int:
    return sum(p.read_bytes().count(b'{"chunk"') for p in folder.glob("*.jsonl"))


def bench_server_upload(root: Path, size: int, rounds: int) -> dict:
    """MiB/s of `mllib data upload` to a team server on loopback and to the local store, side by
    side; then the server's re-upload of the same file (bytes sent)."""
    home = root / "server"
    port = _free_port()
    env = {**os.environ, "MLLIB_HOME": str(root / "mllib-home"), "CI": "true"}
    mllib = [sys.executable, "-m", "mllib"]
    subprocess.run(
        [*mllib, "server", "init", "--dir", str(home), "--port", str(port)],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    token = subprocess.run(
        [*mllib, "server", "users", "add", "bench", "--dir", str(home)],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    with open(root / "server.log", "wb") as log:
        server = subprocess.Popen(
            [*mllib, "server", "start", "--dir", str(home)], env=env, stdout=log, stderr=log
        )
    saved = os.environ.get("MLLIB_HOME")
    os.environ["MLLIB_HOME"] = env["MLLIB_HOME"]  # the `mllib data` commands' login
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, server, root / "server.log")
        project = new_project(root, "to-server")
        subprocess.run(
            [*mllib, "login", url], input=token + "\n", text=True, cwd=project, env=env,
            check=True, capture_output=True,
        )  # fmt: skip
        local_s, server_s = [], []
        path = root / "upload.bin"
        for i in range(rounds):
            make_file(path, size)  # new bytes each round: the server has none of them
            subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)
            _, wall, _ = run_cli(project, "upload", str(path), "--name", f"l{i}", "--local")
            local_s.append(wall)
            sent, wall, _ = run_cli(project, "upload", str(path), "--name", f"s{i}")
            server_s.append(wall)
            if sent["bytes_stored"] < size:
                raise SystemExit(f"the server upload sent {sent['bytes_stored']} of {size} bytes")
        again, again_s, _ = run_cli(project, "upload", str(path), "--name", "again")
        path.unlink()
    finally:
        server.terminate()
        server.wait(timeout=30)
        if saved is None:
            os.environ.pop("MLLIB_HOME", None)
        else:
            os.environ["MLLIB_HOME"] = saved
    local, remote = statistics.median(local_s), statistics.median(server_s)
    return {
        "size_mib": size // MIB,
        "rounds": rounds,
        "local_s": round(local, 2),
        "server_s": round(remote, 2),
        "local_mib_s": round(size / MIB / local),
        "server_mib_s": round(size / MIB / remote),
        "server_vs_local": round(local / remote, 2),
        "again_s": round(again_s, 2),
        "again_mib_s": round(size / MIB / again_s),
        "again_sent_bytes": again["bytes_stored"],
        "again_skipped_chunks": again["chunks_skipped"] + again["files_resumed"],
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the team server did not start:\n{log.read_text(errors='replace')}")


def run(short: bool, workdir: str | None = None) -> dict:
    root = Path(tempfile.mkdtemp(prefix="mllib-bench-data-", dir=workdir))
    try:
        speed_size, rss_size, resume_size = (
            (64 * MIB, 256 * MIB, 128 * MIB) if short else (1024 * MIB, 4096 * MIB, 1024 * MIB)
        )
        return {
            "mode": "short" if short else "full",
            "speed": bench_speed(root, speed_size, 3 if short else 5),
            "rss": bench_rss(root, rss_size),
            "resume": bench_resume(root, resume_size),
            "server_upload": bench_server_upload(
                root, 32 * MIB if short else 256 * MIB, 1 if short else 3
            ),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def verdicts(figures: dict) -> dict[str, bool]:
    return {
        "speed_ratio >= 0.8": figures["speed"]["speed_ratio"] >= GOALS["speed_ratio"],
        "peak RSS < 100 MB": figures["rss"]["rss_mb"] < GOALS["rss_mb"],
        "re-upload stores 0 bytes": figures["rss"]["reupload_bytes"] == GOALS["reupload_bytes"],
        "resume re-sends <= 1 chunk": figures["resume"]["resent_chunks"] <= GOALS["resent_chunks"],
        "server re-upload sends 0 bytes": figures["server_upload"]["again_sent_bytes"]
        == GOALS["server_resent_bytes"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="small sizes (the test suite's mode)")
    parser.add_argument("--dir", help="where to write the test files (default: the temp folder)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args()
    figures = run(args.short, args.dir)
    checks = verdicts(figures)
    if args.json:
        print(json.dumps({**figures, "goals": checks}, indent=2))
        return 0
    print(json.dumps(figures, indent=2))
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

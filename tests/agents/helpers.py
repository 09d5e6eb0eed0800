"""Running the `mllib` command as a user would, and reading registry state for assertions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sshlab import wait_for


def mllib(
    *args: str, timeout: float = 120, cwd: Path | None = None, **kw
) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "mllib", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        **kw,
    )


def add_agent_cli(lab, host, name: str = "a", *extra: str) -> subprocess.CompletedProcess:
    """`mllib agents add NAME` for a lab host, with `extra` options."""
    args = lab.spec_args(host)
    return mllib(
        "agents",
        "add",
        name,
        "--host",
        args["host"],
        "--port",
        str(args["port"]),
        "--user",
        args["user"],
        "--key",
        args["key"],
        *extra,
    )


def popen_mllib(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "mllib", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=cwd,
        env=env,
    )


def workspace(root: Path):
    from mllib.workspace import Workspace

    return Workspace.find(root)


def run_record(root: Path, run_id: str):
    from mllib.registry.runs import get_run

    ws = workspace(root)
    try:
        return get_run(ws.registry, run_id)
    finally:
        ws.registry.close()


def wait_finished(root: Path, run_id: str, timeout: float = 90.0):
    return wait_for(
        lambda: (r := run_record(root, run_id)).finished and r,
        timeout=timeout,
        what=f"run {run_id} to finish",
        interval=0.2,
    )


def detached_run(root: Path, *args: str) -> str:
    result = mllib("train", "model.py", "--remote", "--detach", *args, cwd=root)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def table_dump(root: Path, run_id: str) -> dict:
    """Everything the registry holds about a run, to compare states exactly."""
    ws = workspace(root)
    reg = ws.registry
    try:
        return {
            "run": reg.query(
                "SELECT status, failure_class, error, started_at, ended_at, host, attempt, phase "
                "FROM runs WHERE id = ?",
                (run_id,),
            ),
            "params": reg.query("SELECT * FROM params WHERE run_id = ? ORDER BY name", (run_id,)),
            "metrics": reg.query("SELECT * FROM metrics WHERE run_id = ? ORDER BY seq", (run_id,)),
            "eval": reg.query(
                "SELECT * FROM eval_metrics WHERE run_id = ? ORDER BY name", (run_id,)
            ),
            "artifacts": reg.query(
                "SELECT * FROM artifacts WHERE run_id = ? ORDER BY path", (run_id,)
            ),
            "models": reg.query(
                "SELECT name, version, sha256 FROM models WHERE run_id = ?", (run_id,)
            ),
            "attempts": reg.query("SELECT * FROM agent_attempts WHERE run_id = ?", (run_id,)),
            "cursors": reg.query("SELECT agent, cursor FROM agent_sync ORDER BY agent"),
        }
    finally:
        reg.close()
